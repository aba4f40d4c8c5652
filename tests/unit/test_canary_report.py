"""The viability canary: step checks, report, metrics, and the alert webhook's behaviour.

A fake OpenAI-compatible API and a webhook receiver run on 127.0.0.1 (``http.server``
threads), so the real ``openai`` and ``httpx`` clients do the talking.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from core.db import Database
from core.errors import ConfigurationError
from core.settings import AlertSettings, CanarySettings, Settings, load_settings
from serving.ops.alert_webhook import (
    CanaryAlerter,
    WebhookNotifier,
    failure_payload,
    recovery_payload,
)
from serving.ops.canary import STEPS, CanaryMetrics, CanaryReport, CanaryStep, run_canary
from serving.ops.canary_cli import add_canary_commands
from serving.ops.canary_schedule import (
    CanaryScheduler,
    canary_api_key,
    ensure_canary_key,
    start_canary_scheduler,
)

KEY = "enc_0123456789abcdef.secret-of-the-canary-key-not-real-000000000"
EMAIL = re.compile(r"[\w.+-]+@[\w.-]+\.com")


# --- a fake Enclave API ----------------------------------------------------------------------
@dataclass
class FakeApi:
    """What the fake API answers; tests change it to induce one failure at a time."""

    accept_anonymous: bool = False
    protect_pii: bool = True
    pii_reply: str = "Your email address is {email}."
    sources: list[str] = field(default_factory=lambda: ["it-vpn", "security-travel-devices"])
    grounded_reply: str = "Use the Client Secure profile [1]."
    key_prefix: str = "enc_"
    decision: str = "answer"
    chats: int = 0

    def lineage(self, request_id: str, protected: dict[str, int], sources: list[str]) -> Any:
        return {
            "request_id": request_id,
            "engine": "vllm",
            "fallback": None,
            "decision": self.decision,
            "guard": {"intent": "it_support", "reply_cut_for_leak": False},
            "pii": {"protected": protected, "masked_in_reply": {}},
            "retrieval": "ok" if sources else "empty",
            "sources": [{"number": i + 1, "document_id": d} for i, d in enumerate(sources)],
            "timings_ms": {"retrieval": 3.0},
        }


class _ApiHandler(BaseHTTPRequestHandler):
    api: FakeApi

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", "req-fake-1")
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        presented = self.headers.get("authorization", "")
        if not presented and self.api.accept_anonymous:
            return True
        if presented.startswith(f"Bearer {self.api.key_prefix}"):
            return True
        problem = {"title": "Unauthenticated", "detail": "no key", "request_id": "req-401"}
        self._json(401, problem, "application/problem+json")
        return False

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path == "/v1/me":
            self._json(200, {"roles": ["staff"], "tenant": "default"})
        elif self.path == "/v1/models":
            model = {"id": "m", "object": "model", "created": 0, "owned_by": "enclave"}
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._json(404, {"detail": "no route"})

    def do_POST(self) -> None:
        if not self._authorised():
            return
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.api.chats += 1
        request_id = f"req-chat-{self.api.chats}"
        text = body["messages"][-1]["content"]
        found = EMAIL.search(text)
        if body.get("stream"):
            self._stream(request_id)
            return
        protected = {"EMAIL_ADDRESS": 1} if found and self.api.protect_pii else {}
        reply = self.api.pii_reply.format(email=found.group(0) if found else "")
        completion = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
            "enclave": self.api.lineage(request_id, protected, []),
        }
        self._json(200, completion)

    def _stream(self, request_id: str) -> None:
        base = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": 0}
        base["model"] = "m"
        frames = [
            {**base, "choices": [{"index": 0, "delta": {"content": self.api.grounded_reply}}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {
                **base,
                "choices": [],
                "usage": {"prompt_tokens": 50, "completion_tokens": 8, "total_tokens": 58},
            },
            {**base, "choices": [], "enclave": self.api.lineage(request_id, {}, self.api.sources)},
        ]
        payload = b"".join(f"data: {json.dumps(f)}\n\n".encode() for f in frames)
        payload += b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-request-id", request_id)
        self.end_headers()
        self.wfile.write(payload)


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api() -> Iterator[tuple[FakeApi, str]]:
    state = FakeApi()
    handler = type("Handler", (_ApiHandler,), {"api": state})
    for server in _serve(handler):
        yield state, f"http://127.0.0.1:{server.server_address[1]}"


# --- a webhook receiver ----------------------------------------------------------------------
@dataclass
class Receiver:
    url: str
    payloads: list[dict[str, Any]]
    statuses: list[int]  # answered in order; 200 once exhausted
    delay_s: float = 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received: list[dict[str, Any]] = []
    state = Receiver(url="", payloads=received, statuses=[])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            time.sleep(state.delay_s)
            status = state.statuses.pop(0) if state.statuses else 200
            with contextlib.suppress(OSError):  # a client that timed out has hung up
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

    for server in _serve(Handler):
        state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/enclave"
        yield state


def _notifier(url: str, timeout_s: float = 2.0) -> WebhookNotifier:
    return WebhookNotifier(AlertSettings(webhook_url=url, timeout_s=timeout_s), backoff_s=0.05)


def _report(ok: bool, *, started_at: datetime | None = None) -> CanaryReport:
    steps = [CanaryStep(name=name, status="ok", duration_s=0.1) for name in STEPS]
    if not ok:
        steps[2] = CanaryStep(
            name="retrieval",
            status="failed",
            message="expected document 'it-vpn' is not among the sources []",
            request_id="req-42",
        )
    return CanaryReport(
        base_url="http://127.0.0.1:8000",
        started_at=started_at or datetime.now(UTC),
        duration_s=1.5,
        steps=steps,
    )


# --- the canary's checks ---------------------------------------------------------------------
def test_a_healthy_api_passes_every_step(api: tuple[FakeApi, str]) -> None:
    _, url = api
    report = run_canary(url + "/v1/", KEY, CanarySettings(timeout_s=20))
    assert report.ok, report.as_dict()
    document = report.as_dict()
    assert [s["name"] for s in document["steps"]] == list(STEPS)
    assert {s["status"] for s in document["steps"]} == {"ok"}
    assert document["failed_step"] is None
    assert document["base_url"] == url
    guards = report.steps[1].detail
    assert guards["protected"] == {"EMAIL_ADDRESS": 1}
    assert guards["restored"] is True
    assert report.steps[2].detail["sources"] == ["it-vpn", "security-travel-devices"]
    assert report.steps[3].detail["completion_tokens"] == 8
    assert report.duration_s >= sum(s.duration_s for s in report.steps) * 0.99
    # The report may go anywhere: it holds neither the key nor the synthetic address.
    serialized = json.dumps(document)
    assert KEY not in serialized
    assert "@" not in serialized


@pytest.mark.parametrize(
    ("change", "step", "message"),
    [
        ({"accept_anonymous": True}, "auth", "without credentials answered 200, not 401"),
        ({"key_prefix": "nope_"}, "auth", "answered 401"),
        ({"protect_pii": False}, "guards", "did not protect"),
        ({"pii_reply": "Noted: <EMAIL_ADDRESS_1>"}, "guards", "placeholders ['<EMAIL_ADDRESS_1>']"),
        ({"pii_reply": "Hello there!"}, "guards", "does not give the user's e-mail address back"),
        ({"decision": "block"}, "guards", "decided 'block' (intent 'it_support')"),
        ({"sources": ["hr-parental-leave"]}, "retrieval", "'it-vpn' is not among the sources"),
        ({"grounded_reply": ""}, "generation", "empty"),
        ({"grounded_reply": "See <PERSON_2>."}, "output_scan", "placeholders ['<PERSON_2>']"),
    ],
)
def test_each_broken_stage_fails_its_step(
    api: tuple[FakeApi, str], change: dict[str, Any], step: str, message: str
) -> None:
    state, url = api
    for key, value in change.items():
        setattr(state, key, value)
    report = run_canary(url, KEY, CanarySettings(timeout_s=20))
    assert not report.ok
    failed = report.failed_step
    assert failed is not None
    assert failed.name == step
    assert message in failed.message
    assert failed.message in report.summary()
    if step == "auth":  # nothing else can be checked without a session
        assert [s.status for s in report.steps[1:]] == ["skipped"] * (len(STEPS) - 1)
    if step in {"guards", "retrieval"}:
        assert failed.request_id
        assert failed.request_id.startswith("req-")


def test_an_unreachable_api_fails_auth_with_a_clear_message() -> None:
    report = run_canary("http://127.0.0.1:9", KEY, CanarySettings(timeout_s=5))
    assert report.failed_step is not None
    assert report.failed_step.name == "auth"
    assert "cannot reach http://127.0.0.1:9" in report.failed_step.message


def test_metrics_follow_the_runs() -> None:
    registry = CollectorRegistry()
    metrics = CanaryMetrics(registry)
    value = registry.get_sample_value
    assert value("enclave_canary_runs_total", {"result": "failed"}) == 0
    good = _report(True)
    metrics.record(good)
    assert value("enclave_canary_success") == 1
    stamp = value("enclave_canary_last_success_timestamp_seconds")
    assert stamp == pytest.approx(good.started_at.timestamp() + 1.5)
    metrics.record(_report(False))
    assert value("enclave_canary_success") == 0
    assert value("enclave_canary_last_success_timestamp_seconds") == stamp
    assert value("enclave_canary_runs_total", {"result": "ok"}) == 1
    assert value("enclave_canary_runs_total", {"result": "failed"}) == 1
    assert value("enclave_canary_duration_seconds_count") == 2


# --- alerts ----------------------------------------------------------------------------------
def test_failure_and_recovery_payloads_are_slack_shaped() -> None:
    failed = failure_payload(_report(False))
    assert set(failed) == {"text", "blocks"}
    assert "retrieval" in failed["text"]
    assert "req-42" in failed["text"]
    header, section, context = failed["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Enclave canary failing"},
    }
    assert section["type"] == "section"
    assert section["text"]["type"] == "mrkdwn"
    assert "`req-42`" in section["text"]["text"]
    assert context["type"] == "context"
    since = datetime.now(UTC) - timedelta(minutes=20)
    recovered = recovery_payload(_report(True), since)
    assert "recovered after failing for 20 min" in recovered["text"]
    assert recovered["blocks"][0]["text"]["text"] == "Enclave canary recovered"
    long = _report(False)
    long.steps[2].message = "x" * 5000
    assert all(len(b["text"]["text"]) <= 3000 for b in failure_payload(long)["blocks"][:2])


def test_alerts_are_posted_on_state_changes_only(receiver: Receiver, tmp_path: Path) -> None:
    state = tmp_path / "canary" / "state.json"
    alerter = CanaryAlerter(_notifier(receiver.url), state)
    outcomes = [alerter.observe(_report(ok)) for ok in (True, True, False, False, False)]
    assert outcomes == [None, None, "failure", None, None]
    assert len(receiver.payloads) == 1
    assert "Enclave canary failing" in json.dumps(receiver.payloads[0])
    # The state survives the process: the next `enclave canary` run reports the recovery.
    again = CanaryAlerter(_notifier(receiver.url), state)
    assert [again.observe(_report(ok)) for ok in (True, True)] == ["recovery", None]
    assert len(receiver.payloads) == 2
    assert "failing for" in receiver.payloads[1]["text"]


def test_a_first_run_that_fails_alerts(receiver: Receiver) -> None:
    alerter = CanaryAlerter(_notifier(receiver.url))
    assert alerter.observe(_report(False)) == "failure"
    assert len(receiver.payloads) == 1


def test_a_failed_post_is_retried_once_after_a_backoff(receiver: Receiver) -> None:
    receiver.statuses[:] = [503]
    started = time.monotonic()
    assert _notifier(receiver.url).post({"text": "t", "blocks": []}) is True
    assert time.monotonic() - started >= 0.05
    assert len(receiver.payloads) == 2
    receiver.statuses[:] = [500, 502]
    assert _notifier(receiver.url).post({"text": "t", "blocks": []}) is False
    assert len(receiver.payloads) == 4  # one retry, no more
    receiver.statuses[:] = [400]
    assert _notifier(receiver.url).post({"text": "t", "blocks": []}) is False
    assert len(receiver.payloads) == 5  # a refused payload is not retried


def test_an_unreachable_or_slow_webhook_never_raises(receiver: Receiver) -> None:
    assert _notifier("http://127.0.0.1:9/hook").post({"text": "t"}) is False
    receiver.delay_s = 0.5
    started = time.monotonic()
    assert _notifier(receiver.url, timeout_s=0.2).post({"text": "t"}) is False
    assert time.monotonic() - started < 2.5
    alerter = CanaryAlerter(_notifier("http://127.0.0.1:9/hook"))
    assert alerter.observe(_report(False)) == "failure"  # reported, not raised


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/services/T000/B000/XXXX",
        "http://10.0.0.8/hook",
        "http://alerts.example.com.evil/hook",
        "ftp://127.0.0.1/hook",
        "http://user:pw@127.0.0.1/hook",
    ],
)
def test_the_webhook_must_stay_inside(url: str) -> None:
    with pytest.raises(ValidationError, match="webhook"):
        AlertSettings(webhook_url=url)


def test_in_cluster_and_loopback_webhooks_are_allowed() -> None:
    for url in (
        "http://127.0.0.1:9093/hook",
        "http://[::1]:8080/",
        "http://alert-relay.monitoring.svc:8080/slack",
        "https://relay.monitoring.svc.cluster.local/slack",
    ):
        assert AlertSettings(webhook_url=url).webhook_url == url


def test_a_public_webhook_stops_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVE_ALERTS__WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X")
    with pytest.raises(ConfigurationError, match=r"alerts\.allowed_hosts"):
        load_settings(config_dir=tmp_path, profile="default")


def test_the_notifier_refuses_a_host_outside_the_allow_list(receiver: Receiver) -> None:
    # A copy made without validation must still not become an egress path.
    loose = AlertSettings().model_copy(
        update={"webhook_url": receiver.url, "allowed_hosts": ["*.svc"]}
    )
    notifier = WebhookNotifier(loose, backoff_s=0.01)
    assert not notifier.enabled
    assert notifier.refusal is not None
    assert "127.0.0.1" in notifier.refusal
    assert notifier.post({"text": "t"}) is False
    assert receiver.payloads == []


# --- the command and the embedded schedule ---------------------------------------------------
def _run_cli(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_canary_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["canary", *argv])
    return int(args.handler(settings, args))


def test_enclave_canary_prints_json_and_exits_by_result(
    api: tuple[FakeApi, str],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    state, url = api
    monkeypatch.delenv("ENCLAVE_CANARY_API_KEY", raising=False)
    assert _run_cli(settings, "--base-url", url) == 2
    assert "ENCLAVE_CANARY_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("ENCLAVE_CANARY_API_KEY", KEY)
    metrics = tmp_path / "canary.prom"
    assert _run_cli(settings, "--base-url", url, "--json", "--metrics-file", str(metrics)) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is True
    assert [s["status"] for s in document["steps"]] == ["ok"] * len(STEPS)
    assert "enclave_canary_success 1.0" in metrics.read_text()
    state.sources = []
    assert _run_cli(settings, "--base-url", url) == 1
    out = capsys.readouterr().out
    assert "retrieval    failed" in out
    assert "canary failed at step retrieval" in out


def test_the_key_comes_from_env_then_file(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ENCLAVE_CANARY_API_KEY", raising=False)
    assert canary_api_key(settings) is None
    key_file = tmp_path / "mounted-key"
    key_file.write_text(KEY + "\n")
    mounted = settings.model_copy(
        update={"canary": settings.canary.model_copy(update={"api_key_file": key_file})}
    )
    assert canary_api_key(mounted) == KEY
    monkeypatch.setenv("ENCLAVE_CANARY_API_KEY", "enc_from_env")
    assert canary_api_key(mounted) == "enc_from_env"


def test_the_embedded_canary_issues_its_key_once(settings: Settings, database: Database) -> None:
    first = ensure_canary_key(settings)
    path = settings.paths.data_dir / "secrets" / "canary-api-key"
    assert path.read_text() == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_canary_key(settings) == first  # still valid: reused
    path.write_text("enc_0000000000000000." + "A" * 43)  # not in the store: replaced
    replaced = ensure_canary_key(settings)
    assert replaced != first
    assert path.read_text() == replaced


def test_the_scheduler_runs_records_and_alerts(
    api: tuple[FakeApi, str], settings: Settings, database: Database, receiver: Receiver
) -> None:
    state, url = api
    state.sources = ["nothing-useful"]
    configured = settings.model_copy(
        update={
            "canary": CanarySettings(interval_s=10, timeout_s=10),
            "alerts": AlertSettings(webhook_url=receiver.url),
        }
    )
    registry = CollectorRegistry()
    scheduler = start_canary_scheduler(configured, url, registry=registry)
    try:
        deadline = time.monotonic() + 20
        while not receiver.payloads and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.stop()
    assert registry.get_sample_value("enclave_canary_runs_total", {"result": "failed"}) == 1
    assert registry.get_sample_value("enclave_canary_success") == 0
    (payload,) = receiver.payloads
    assert "retrieval" in payload["text"]
    assert (configured.paths.data_dir / "secrets" / "canary-api-key").is_file()


def test_a_disabled_canary_does_not_run(settings: Settings) -> None:
    off = settings.model_copy(update={"canary": CanarySettings(enabled=False)})
    start_canary_scheduler(off, "http://127.0.0.1:9", registry=CollectorRegistry()).stop()


def test_a_run_in_flight_at_shutdown_is_not_reported(
    api: tuple[FakeApi, str], settings: Settings, database: Database, receiver: Receiver
) -> None:
    state, url = api
    state.sources = []
    configured = settings.model_copy(update={"alerts": AlertSettings(webhook_url=receiver.url)})
    shutdown = threading.Event()
    shutdown.set()  # the launcher is already stopping when the run ends
    registry = CollectorRegistry()
    scheduler = CanaryScheduler(
        configured,
        url,
        metrics=CanaryMetrics(registry),
        alerter=CanaryAlerter(WebhookNotifier(configured.alerts)),
        until=shutdown,
    )
    assert scheduler.run_once() is None
    assert registry.get_sample_value("enclave_canary_duration_seconds_count") == 0
    assert receiver.payloads == []
