"""``GET /metrics`` and the per-request telemetry, on a tiny Litestar app (not Enclave's)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from api.errors import exception_handlers
from api.request_ids import echo_request_id
from api.routes.metrics import metrics_route, record_http
from core.metrics import EnclaveMetrics
from core.telemetry import JsonFormatter
from core.tracing import current_trace_id, span

_log = logging.getLogger("enclave.test.route")
_captured: dict[str, Any] = {}


@get("/v1/items/{item_id:int}")
async def show_item(item_id: int, depth: int = 1) -> dict[str, int]:
    with span("lookup", {"enclave.item": item_id}):
        _log.info("item shown", extra={"item": item_id})
        _captured["trace_id"] = current_trace_id()
    return {"id": item_id, "depth": depth}


@get("/boom")
async def boom() -> None:
    raise RuntimeError("handler failed")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def client(
    registry: CollectorRegistry, provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient[Litestar]]:
    # The handler's span() uses the global tracer: point it at this test's provider.
    monkeypatch.setattr("core.tracing.trace.get_tracer", provider.get_tracer)
    metrics = EnclaveMetrics(registry)
    app = Litestar(
        route_handlers=[show_item, boom, metrics_route(registry)],
        before_send=[echo_request_id],
        exception_handlers=exception_handlers,
    )
    record_http(app, metrics, tracer=provider.get_tracer("test"))
    with TestClient(app=app) as client:
        yield client


@pytest.fixture
def log_lines() -> Iterator[list[dict[str, Any]]]:
    handler = _Lines()
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    yield handler.lines
    _log.removeHandler(handler)


def _http_series(text: str) -> dict[tuple[str, str, str], float]:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for s in families["enclave_http_requests"].samples
        if s.name == "enclave_http_requests_total"
    }


def test_metrics_are_served_in_the_prometheus_text_format(client: TestClient[Litestar]) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert {"enclave_http_requests", "enclave_stage_duration_seconds"} <= names

    openmetrics = client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


def test_requests_are_counted_by_route_template_never_by_path(
    client: TestClient[Litestar],
) -> None:
    before = _http_series(client.get("/metrics").text)
    assert before[("/v1/items/{item_id}", "GET", "5xx")] == 0.0  # declared: starts at zero

    assert client.get("/v1/items/41").status_code == 200
    assert client.get("/v1/items/42").status_code == 200
    assert client.get("/v1/items/41", params={"depth": "deep"}).status_code == 400
    assert client.get("/v1/items/not-a-number").status_code == 404  # no route takes it
    assert client.get("/v1/users/jane.doe@example.com").status_code == 404
    assert client.post("/v1/items/41").status_code == 405
    assert client.get("/boom").status_code == 500

    text = client.get("/metrics").text
    series = _http_series(text)
    assert series[("/v1/items/{item_id}", "GET", "2xx")] == 2.0
    assert series[("/v1/items/{item_id}", "GET", "4xx")] == 1.0
    assert series[("unmatched", "GET", "4xx")] == 2.0
    assert series[("unmatched", "POST", "4xx")] == 1.0
    assert series[("/boom", "GET", "5xx")] == 1.0
    assert series[("/metrics", "GET", "2xx")] == 1.0  # the first scrape
    assert "jane.doe" not in text
    assert "/v1/items/41" not in text
    assert "not-a-number" not in text
    assert "deep" not in text
    durations = {
        (s.labels["route"], s.labels["method"]): s.value
        for f in text_string_to_metric_families(text)
        if f.name == "enclave_http_request_duration_seconds"
        for s in f.samples
        if s.name.endswith("_count")
    }
    assert durations[("/v1/items/{item_id}", "GET")] == 3.0


def test_each_request_is_one_trace_whose_id_is_returned(
    client: TestClient[Litestar], exporter: InMemorySpanExporter
) -> None:
    first = client.get("/v1/items/7")
    second = client.get("/v1/items/8")

    trace_id = first.headers["x-trace-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert second.headers["x-trace-id"] != trace_id
    assert _captured["trace_id"] == second.headers["x-trace-id"]

    spans = [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"GET /v1/items/{item_id}", "lookup"}
    root = by_name["GET /v1/items/{item_id}"]
    assert root.parent is None
    assert by_name["lookup"].parent.span_id == root.context.span_id  # type: ignore[union-attr]
    assert root.attributes is not None
    assert root.attributes["http.route"] == "/v1/items/{item_id}"
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["enclave.request_id"] == first.headers["x-request-id"]
    assert "/v1/items/7" not in json.dumps(dict(root.attributes))


def test_failed_and_unmatched_requests_are_traced_too(
    client: TestClient[Litestar], exporter: InMemorySpanExporter
) -> None:
    failed = client.get("/boom")
    missing = client.get("/nowhere")
    assert re.fullmatch(r"[0-9a-f]{32}", failed.headers["x-trace-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", missing.headers["x-trace-id"])
    roots = {s.name: s for s in exporter.get_finished_spans() if s.parent is None}
    assert roots["GET /boom"].status.status_code.name == "ERROR"
    assert roots["GET unmatched"].attributes["http.response.status_code"] == 404  # type: ignore[index]


def test_log_lines_of_a_request_carry_its_request_and_trace_ids(
    client: TestClient[Litestar], log_lines: list[dict[str, Any]]
) -> None:
    response = client.get("/v1/items/5", headers={"x-request-id": "req_client_chosen_0001"})
    assert response.headers["x-request-id"] == "req_client_chosen_0001"
    (line,) = log_lines
    assert line["request_id"] == "req_client_chosen_0001"
    assert line["trace_id"] == response.headers["x-trace-id"]
    assert line["item"] == 5


def test_a_client_cannot_choose_the_trace_id(
    client: TestClient[Litestar], exporter: InMemorySpanExporter
) -> None:
    forged = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = client.get("/v1/items/1", headers={"traceparent": forged})
    assert response.headers["x-trace-id"] != "0af7651916cd43dd8448eb211c80319c"
