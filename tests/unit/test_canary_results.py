"""The canary's metrics as every API replica exports them from the recorded runs: the
mapping to docs/metrics.md's names, and a database that fails or hangs never breaks
``/metrics``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from api.routes.metrics import metrics_route
from core.metrics import CanaryResults, CanarySnapshot
from core.settings import Settings
from serving.ops.alert_webhook import CanaryAlerter, WebhookNotifier
from serving.ops.canary import CanaryReport, CanaryStep
from serving.ops.canary_schedule import CanaryScheduler


class _BrokenDatabase:
    """Stands in for ``core.db.Database``: every read fails, or hangs for ``hang_s``."""

    def __init__(self, hang_s: float = 0.0) -> None:
        self.hang_s = hang_s
        self.reads = 0

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Any]:
        self.reads += 1
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        raise ConnectionRefusedError("database down")
        yield  # pragma: no cover


def _scrape(registry: CollectorRegistry, canary: CanaryResults) -> tuple[int, str, float]:
    app = Litestar(route_handlers=[metrics_route(registry, canary=canary)])
    with TestClient(app) as client:
        started = time.monotonic()
        response = client.get("/metrics")
        return response.status_code, response.text, time.monotonic() - started


def test_no_recorded_run_means_no_verdict_and_zero_counts() -> None:
    registry = CollectorRegistry()
    CanaryResults(_BrokenDatabase(), registry)  # type: ignore[arg-type]
    value = registry.get_sample_value
    # Absent, not 0: the failing-canary alert must not fire for a canary that never ran,
    # and the stale-canary alert's absent() must see it.
    assert value("enclave_canary_success") is None
    assert value("enclave_canary_last_success_timestamp_seconds") is None
    assert value("enclave_canary_runs_total", {"result": "ok"}) == 0
    assert value("enclave_canary_runs_total", {"result": "failed"}) == 0
    assert value("enclave_canary_duration_seconds_count") == 0


def test_runs_map_to_the_catalogue_names() -> None:
    snapshot = CanarySnapshot()
    snapshot.count(ok=True, duration_s=3.0)
    snapshot.count(ok=False, duration_s=400.0)
    snapshot.last_ok = False
    passed = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    snapshot.last_success_at = passed
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in snapshot.families()
        for s in family.samples
    }
    assert samples[("enclave_canary_success", ())] == 0
    assert samples[("enclave_canary_last_success_timestamp_seconds", ())] == passed.timestamp()
    assert samples[("enclave_canary_runs_total", (("result", "ok"),))] == 1
    assert samples[("enclave_canary_runs_total", (("result", "failed"),))] == 1
    assert samples[("enclave_canary_duration_seconds_bucket", (("le", "2.0"),))] == 0
    assert samples[("enclave_canary_duration_seconds_bucket", (("le", "5.0"),))] == 1
    assert samples[("enclave_canary_duration_seconds_bucket", (("le", "300.0"),))] == 1
    assert samples[("enclave_canary_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert samples[("enclave_canary_duration_seconds_count", ())] == 2
    assert samples[("enclave_canary_duration_seconds_sum", ())] == 403.0


def test_a_failing_database_keeps_the_last_result_and_metrics_answer() -> None:
    registry = CollectorRegistry()
    database = _BrokenDatabase()
    canary = CanaryResults(database, registry, refresh_s=60)  # type: ignore[arg-type]
    canary.snapshot.last_ok = True
    canary.snapshot.last_success_at = datetime.now(UTC)
    status, text, _ = _scrape(registry, canary)
    assert status == 200
    assert "enclave_canary_success 1.0" in text
    _scrape(registry, canary)
    assert database.reads == 1  # refreshed at most every refresh_s, not per scrape


def test_a_hanging_database_does_not_hold_the_scrape() -> None:
    registry = CollectorRegistry()
    canary = CanaryResults(_BrokenDatabase(hang_s=30), registry, timeout_s=0.2)  # type: ignore[arg-type]
    status, text, seconds = _scrape(registry, canary)
    assert status == 200
    assert seconds < 5
    assert "enclave_canary_runs_total" in text


def test_the_scheduler_records_each_run_and_survives_a_failing_store(
    settings: Settings, database: object
) -> None:
    recorded: list[CanaryReport] = []

    def recorder(report: CanaryReport) -> None:
        recorded.append(report)
        raise ConnectionRefusedError("database down")

    scheduler = CanaryScheduler(
        settings,
        "http://127.0.0.1:9",  # nothing listens: the run fails, and is still recorded
        metrics=None,
        alerter=CanaryAlerter(WebhookNotifier(settings.alerts)),
        recorder=recorder,
    )
    report = scheduler.run_once()
    assert report is not None
    assert not report.ok
    assert recorded == [report]
    assert isinstance(report.steps[0], CanaryStep)
