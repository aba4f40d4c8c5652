"""The viability canary against the running stack: `enclave canary`, its alerts, its schedule."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from core.settings import AlertSettings, CanarySettings, Settings
from serving.ops.canary import STEPS
from serving.ops.canary_schedule import start_canary_scheduler
from tests.e2e.stack import GUARD_DIR, ROOT, RunningStack

pytestmark = pytest.mark.e2e

ENCLAVE = [sys.executable, "-m", "serving.ops.cli"]


class _Receiver:
    """A Slack-compatible webhook on 127.0.0.1 that keeps what it was sent."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        received = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/enclave"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    running = _Receiver()
    yield running
    running.close()


def _enclave_canary(
    stack: RunningStack, api_key: str, data_dir: Path, **env: str
) -> tuple[int, dict[str, Any]]:
    """Run `enclave canary --json` as an operator would; its exit code and report."""
    environment = {
        **os.environ,
        "ENCLAVE_PROFILE": "test",
        "ENCLAVE_CONFIG_DIR": str(ROOT),
        "ENCLAVE_PATHS__DATA_DIR": str(data_dir),
        "ENCLAVE_CANARY_API_KEY": api_key,
        # The canary process runs under the same egress guard as the stack.
        "PYTHONPATH": os.pathsep.join([str(GUARD_DIR), str(ROOT)]),
        **env,
    }
    done = subprocess.run(
        [*ENCLAVE, "canary", "--base-url", stack.base_url, "--json"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.stdout, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def test_enclave_canary_passes_against_the_stack(
    stack: RunningStack, api_keys: dict[str, str], tmp_path: Path
) -> None:
    code, report = _enclave_canary(stack, api_keys["staff"], tmp_path)
    assert code == 0, json.dumps(report, indent=2)
    assert report["ok"] is True
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == list(STEPS)
    assert {s["status"] for s in steps.values()} == {"ok"}
    assert steps["guards"]["detail"]["protected"]["EMAIL_ADDRESS"] >= 1
    assert steps["guards"]["detail"]["restored"] is True
    assert "it-vpn" in steps["retrieval"]["detail"]["sources"]
    assert steps["generation"]["detail"]["completion_tokens"] > 0
    assert report["duration_s"] < 120
    assert api_keys["staff"] not in json.dumps(report)


def test_a_failing_canary_alerts_once_and_its_recovery_too(
    stack: RunningStack, api_keys: dict[str, str], tmp_path: Path, receiver: _Receiver
) -> None:
    alerts = {"ENCLAVE_ALERTS__WEBHOOK_URL": receiver.url}
    # Point the canary at a document the knowledge base does not hold: retrieval must fail.
    broken = {**alerts, "ENCLAVE_CANARY__EXPECTED_DOCUMENT": "no-such-document"}
    code, report = _enclave_canary(stack, api_keys["staff"], tmp_path, **broken)
    assert code == 1
    assert report["failed_step"] == "retrieval"
    assert report["request_id"]
    (failure,) = receiver.payloads
    assert "retrieval" in failure["text"]
    assert report["request_id"] in failure["text"]
    assert failure["blocks"][0]["text"]["text"] == "Enclave canary failing"
    # Still failing: no second alert.
    code, _ = _enclave_canary(stack, api_keys["staff"], tmp_path, **broken)
    assert code == 1
    assert len(receiver.payloads) == 1
    code, report = _enclave_canary(stack, api_keys["staff"], tmp_path, **alerts)
    assert code == 0, json.dumps(report, indent=2)
    assert len(receiver.payloads) == 2
    recovery = receiver.payloads[1]
    assert recovery["blocks"][0]["text"]["text"] == "Enclave canary recovered"
    assert api_keys["staff"] not in json.dumps(receiver.payloads)
    assert "@" not in json.dumps(receiver.payloads)  # no synthetic PII in an alert


def test_the_embedded_schedule_issues_its_own_key_and_records_metrics(
    stack: RunningStack, test_settings: Settings, receiver: _Receiver
) -> None:
    # The stack's own data dir: its database and pepper, as `enclave serve` would use them.
    settings = test_settings.model_copy(
        update={
            "paths": test_settings.paths.model_copy(update={"data_dir": stack.data_dir}),
            "canary": CanarySettings(interval_s=3600),
            "alerts": AlertSettings(webhook_url=receiver.url),
        }
    )
    registry = CollectorRegistry()
    scheduler = start_canary_scheduler(settings, stack.base_url, registry=registry)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if registry.get_sample_value("enclave_canary_duration_seconds_count"):
                break
            time.sleep(0.5)
    finally:
        scheduler.stop()
    assert registry.get_sample_value("enclave_canary_runs_total", {"result": "ok"}) == 1
    assert registry.get_sample_value("enclave_canary_success") == 1
    assert registry.get_sample_value("enclave_canary_last_success_timestamp_seconds")
    key_file = stack.data_dir / "secrets" / "canary-api-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("enc_")
    assert receiver.payloads == []  # a first pass is no news
