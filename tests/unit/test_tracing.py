"""Traces: one trace per request across threads, event loops and (simulated) Serve handles;
nothing leaves the process unless a loopback or in-cluster collector is configured; log
lines carry the request and trace ids."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, Tracer
from pydantic import ValidationError

from core.settings import Settings, TelemetrySettings
from core.telemetry import JsonFormatter, bind_request_id, current_request_id
from core.tracing import (
    configure_tracing,
    current_span_id,
    current_trace_id,
    extracted,
    inject,
    root_span,
    span,
)


@pytest.fixture
def tracer(provider: TracerProvider) -> Tracer:
    return provider.get_tracer("test")


def test_stage_spans_nest_under_the_request_span(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    with root_span("POST /v1/chat/completions", tracer=tracer):
        with (
            span("guards", {"enclave.decision": "answer"}, tracer=tracer),
            span("pii.scan", tracer=tracer),
        ):
            pass
        with span("generation", {"enclave.engine": "vllm"}, tracer=tracer):
            pass

    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"POST /v1/chat/completions", "guards", "pii.scan", "generation"}
    assert len({s.context.trace_id for s in spans.values()}) == 1
    root = spans["POST /v1/chat/completions"]
    assert root.parent is None
    assert spans["guards"].parent.span_id == root.context.span_id  # type: ignore[union-attr]
    assert spans["generation"].parent.span_id == root.context.span_id  # type: ignore[union-attr]
    assert spans["pii.scan"].parent.span_id == spans["guards"].context.span_id  # type: ignore[union-attr]
    assert spans["guards"].attributes == {"enclave.decision": "answer"}


def test_each_request_is_a_trace_of_its_own(tracer: Tracer, exporter: InMemorySpanExporter) -> None:
    with root_span("first", tracer=tracer):
        first = current_trace_id()
        # A request handled while another's span is current still starts its own trace.
        with root_span("second", tracer=tracer):
            second = current_trace_id()
    assert first is not None
    assert second is not None
    assert first != second
    assert {s.name: s.parent for s in exporter.get_finished_spans()} == {
        "first": None,
        "second": None,
    }


def _replica_call(carrier: dict[str, str], tracer: Tracer) -> dict[str, Any]:
    """What a deployment method sees: another thread, another event loop, a pickled carrier."""
    seen: dict[str, Any] = {}

    async def method(carrier: dict[str, str]) -> None:
        seen["before"] = current_trace_id()
        with extracted(carrier), span("llm.generate", tracer=tracer):
            seen["trace_id"] = current_trace_id()
            seen["request_id"] = current_request_id()
        seen["after"] = current_trace_id()

    shipped = pickle.loads(pickle.dumps(carrier))  # what crosses a Ray handle
    worker = threading.Thread(target=lambda: asyncio.run(method(shipped)))
    worker.start()
    worker.join(timeout=10)
    return seen


def test_the_trace_crosses_a_handle_call_in_another_thread_and_loop(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    with (
        bind_request_id("req_0123456789abcdef01234567"),
        root_span("POST /v1/chat/completions", tracer=tracer),
        span("generation", tracer=tracer),
    ):
        trace_id, caller_span = current_trace_id(), current_span_id()
        carrier = inject()
    assert set(carrier) == {"traceparent", "x-request-id"}
    assert all(isinstance(v, str) for v in carrier.values())

    seen = _replica_call(carrier, tracer)

    assert seen["before"] is None, "without the carrier the replica is outside any trace"
    assert seen["trace_id"] == trace_id
    assert seen["request_id"] == "req_0123456789abcdef01234567"
    assert seen["after"] is None, "the caller's context must not outlive the call"
    replica = next(s for s in exporter.get_finished_spans() if s.name == "llm.generate")
    assert replica.parent is not None
    assert f"{replica.parent.span_id:016x}" == caller_span
    assert replica.parent.is_remote


def test_without_a_carrier_the_replica_starts_no_trace(tracer: Tracer) -> None:
    with root_span("outer", tracer=tracer):
        outer = current_trace_id()
        # An empty or malformed carrier changes nothing about the current context.
        with extracted({}):
            assert current_trace_id() == outer
        with extracted({"traceparent": "garbage", "x-request-id": "bad id\r\n"}):
            assert current_trace_id() == outer
            assert current_request_id() is None
    assert inject() == {}


def test_an_error_marks_the_span_by_class_name_only(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(ValueError, match="jane"), span("output_scan", tracer=tracer):
        raise ValueError("user text: jane.doe@example.com")
    (failed,) = exporter.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError"
    assert failed.attributes == {"error.type": "ValueError"}
    assert failed.events == ()  # no exception event: its message could quote the user


def test_unsampled_requests_still_have_a_trace_id(exporter: InMemorySpanExporter) -> None:
    provider = configure_tracing(
        TelemetrySettings(trace_sample_ratio=0.0), exporter=exporter, install=False
    )
    tracer = provider.get_tracer("test")
    with root_span("GET /v1/models", tracer=tracer):
        trace_id = current_trace_id()
        carrier = inject()
    provider.shutdown()
    assert trace_id is not None
    assert len(trace_id) == 32
    flags = int(carrier["traceparent"].rsplit("-", 1)[1], 16)
    assert flags & 1 == 0, "the sampled flag must be off, so that replicas follow"
    assert exporter.get_finished_spans() == ()


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, int]]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        type(self).received.append((self.path, length))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, int]]]]:
    handler = type("Collector", (_Collector,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", handler.received
    server.shutdown()
    server.server_close()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every socket connect made while the test runs (loopback ones go through)."""
    seen: list[Any] = []
    real = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        seen.append(address)
        real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def test_spans_go_to_the_configured_collector(
    collector: tuple[str, list[tuple[str, int]]],
) -> None:
    url, received = collector
    provider = configure_tracing(TelemetrySettings(otlp_endpoint=url), install=False)
    with root_span("GET /healthz", tracer=provider.get_tracer("test")):
        pass
    assert provider.force_flush(timeout_millis=10_000)
    provider.shutdown()
    assert received, "the collector got nothing"
    assert {path for path, _ in received} == {"/v1/traces"}
    assert all(size > 0 for _, size in received)


def test_without_an_endpoint_nothing_is_exported(
    connects: list[Any], collector: tuple[str, list[tuple[str, int]]]
) -> None:
    _, received = collector
    provider = configure_tracing(TelemetrySettings(), install=False)
    with root_span("GET /healthz", tracer=provider.get_tracer("test")):
        assert current_trace_id() is not None
    assert provider.force_flush(timeout_millis=1_000)
    provider.shutdown()
    assert connects == []
    assert received == []


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://localhost:4318",
        "http://127.0.0.1:4318/",
        "http://[::1]:4318",
        "http://otel-collector.observability.svc:4318",
        "https://otel-collector.observability.svc.cluster.local:4318",
    ],
)
def test_loopback_and_in_cluster_collectors_are_accepted(endpoint: str) -> None:
    assert TelemetrySettings(otlp_endpoint=endpoint).otlp_endpoint == endpoint


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ("https://otlp.vendor-cloud.example.com:4318", "not in telemetry.otlp_allowed_hosts"),
        ("http://10.0.0.8:4318", "not in telemetry.otlp_allowed_hosts"),
        ("http://evil.svc.attacker.net:4318", "not in telemetry.otlp_allowed_hosts"),
        ("grpc://otel-collector.svc:4317", "must be http(s)"),
        ("http://user:secret@otel-collector.svc:4318", "must not carry credentials"),
        ("http://otel-collector.svc:4318?token=x", "without query"),
        ("otel-collector.svc:4318", "must be http(s)"),
    ],
)
def test_collectors_outside_the_premises_are_refused(endpoint: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        TelemetrySettings(otlp_endpoint=endpoint)
    with pytest.raises(ValidationError, match="telemetry"):
        Settings(telemetry={"otlp_endpoint": endpoint})


def test_an_operator_may_allow_an_on_premises_collector() -> None:
    settings = TelemetrySettings(
        otlp_endpoint="http://otel.corp.internal:4318", otlp_allowed_hosts=["*.corp.internal"]
    )
    assert settings.otlp_endpoint == "http://otel.corp.internal:4318"


class _Lines(logging.Handler):
    """Formats at emit time, in the logging call's context (as the real handler does)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def log_lines() -> Iterator[list[dict[str, Any]]]:
    handler = _Lines()
    logger = logging.getLogger("enclave.test.tracing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)


def test_log_lines_carry_the_request_and_trace_ids(
    tracer: Tracer, log_lines: list[dict[str, Any]]
) -> None:
    log = logging.getLogger("enclave.test.tracing")
    log.info("outside")
    with bind_request_id("req_aaaaaaaaaaaaaaaaaaaaaaaa"), root_span("request", tracer=tracer):
        log.info("in the request", extra={"decision": "answer"})
        trace_id, span_id = current_trace_id(), current_span_id()
        carrier = inject()
        # Work the request hands to a thread (to_thread copies the context).
        asyncio.run(asyncio.to_thread(log.info, "in a thread of the request"))

    def replica() -> None:
        with extracted(carrier):
            log.info("in the replica")

    worker = threading.Thread(target=replica)
    worker.start()
    worker.join(timeout=10)

    outside, inside, threaded, remote = log_lines
    assert "request_id" not in outside
    assert "trace_id" not in outside
    assert inside["request_id"] == "req_aaaaaaaaaaaaaaaaaaaaaaaa"
    assert inside["trace_id"] == trace_id
    assert inside["span_id"] == span_id
    assert inside["decision"] == "answer"
    for line in (threaded, remote):
        assert line["request_id"] == "req_aaaaaaaaaaaaaaaaaaaaaaaa"
        assert line["trace_id"] == trace_id


def test_an_explicit_request_id_wins_over_the_bound_one(log_lines: list[dict[str, Any]]) -> None:
    with bind_request_id("req_bbbbbbbbbbbbbbbbbbbbbbbb"):
        logging.getLogger("enclave.test.tracing").info("x", extra={"request_id": "req_other"})
    assert log_lines[0]["request_id"] == "req_other"
