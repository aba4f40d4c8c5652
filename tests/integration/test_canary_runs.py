"""A canary run recorded by one process shows on another API replica's ``/metrics``.

On SQLite and PostgreSQL: the ``enclave canary`` command (or the embedded schedule) records
each run in ``canary_runs``; a second "replica" (its own connection pool, registry and
Litestar app) exports the newest result as the ``enclave_canary_*`` metrics; only the newest
runs are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from api.routes.metrics import metrics_route
from core.db import Database, canary_runs, upgrade
from core.db.canary_schema import record_canary_run
from core.metrics import CanaryResults
from core.settings import Settings
from serving.ops.canary import CanaryReport, CanaryStep
from serving.ops.canary_schedule import record_run
from tests.integration.databases import KINDS, fresh_database_url

pytestmark = pytest.mark.integration


@pytest.fixture(params=KINDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database_url(request.param, tmp_path) as database_url:
        await asyncio.to_thread(upgrade, database_url)
        yield database_url


def _report(ok: bool, started_at: datetime, duration_s: float = 4.0) -> CanaryReport:
    steps = [CanaryStep(name="auth", status="ok", duration_s=0.1)]
    if not ok:
        steps.append(
            CanaryStep(
                name="retrieval",
                status="failed",
                message="expected document 'handbook' is not among the sources []",
                request_id="req_123",
            )
        )
    return CanaryReport(
        base_url="http://api:8000", started_at=started_at, duration_s=duration_s, steps=steps
    )


async def _scrape(client: AsyncTestClient[Litestar]) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items())): (
            sample.value
        )
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("enclave_canary")
    }


async def test_a_run_recorded_elsewhere_shows_on_every_replica(url: str, tmp_path: Path) -> None:
    settings = Settings.model_validate({"paths": {"data_dir": tmp_path}, "database": {"url": url}})
    replica = Database.from_url(url)
    registry = CollectorRegistry()
    canary = CanaryResults(replica, registry, refresh_s=0)
    app = Litestar(route_handlers=[metrics_route(registry, canary=canary)])
    try:
        async with AsyncTestClient(app) as client:
            before = await _scrape(client)
            assert "enclave_canary_success" not in before  # no run yet: no verdict
            assert before["enclave_canary_runs_total{result=ok}"] == 0

            # The CronJob's process: records through the command's own code path.
            passed_at = datetime.now(UTC)
            await asyncio.to_thread(record_run, settings, _report(True, passed_at))
            after_pass = await _scrape(client)
            assert after_pass["enclave_canary_success"] == 1
            stamp = after_pass["enclave_canary_last_success_timestamp_seconds"]
            assert stamp == pytest.approx((passed_at + timedelta(seconds=4)).timestamp(), abs=1)
            assert after_pass["enclave_canary_runs_total{result=ok}"] == 1
            assert after_pass["enclave_canary_duration_seconds_count"] == 1

            failed_at = passed_at + timedelta(minutes=10)
            await asyncio.to_thread(record_run, settings, _report(False, failed_at, 7.5))
            after_fail = await _scrape(client)
            assert after_fail["enclave_canary_success"] == 0
            # The last success stays where it was: the stale alert counts from it.
            assert after_fail["enclave_canary_last_success_timestamp_seconds"] == stamp
            assert after_fail["enclave_canary_runs_total{result=failed}"] == 1
            assert after_fail["enclave_canary_duration_seconds_count"] == 2
    finally:
        await replica.dispose()

    reader = Database.from_url(url)
    try:
        async with reader.reading() as connection:
            details = (
                await connection.execute(select(canary_runs.c.details, canary_runs.c.failed_step))
            ).all()
    finally:
        await reader.dispose()
    assert [row.failed_step for row in details] == [None, "retrieval"]
    assert details[1].details["request_id"] == "req_123"


async def test_a_replica_started_later_shows_the_last_result_without_recounting(
    url: str,
) -> None:
    db = Database.from_url(url)
    try:
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        async with db.transaction() as connection:
            await record_canary_run(connection, long_ago, long_ago, True, None, 3.0, {})
            await record_canary_run(connection, long_ago, long_ago, False, "auth", 1.0, {})
        registry = CollectorRegistry()
        canary = CanaryResults(db, registry)
        await canary.refresh()
        value = registry.get_sample_value
        assert value("enclave_canary_success") == 0
        assert value("enclave_canary_last_success_timestamp_seconds") == long_ago.timestamp()
        # Runs from before this replica started were counted by those running then.
        assert value("enclave_canary_runs_total", {"result": "failed"}) == 0
    finally:
        await db.dispose()


async def test_only_the_newest_runs_are_kept(url: str) -> None:
    db = Database.from_url(url)
    try:
        now = datetime.now(UTC)
        ids = []
        for n in range(5):
            async with db.transaction() as connection:
                ids.append(
                    await record_canary_run(
                        connection, now, now, n % 2 == 0, None, float(n), {"n": n}, keep=3
                    )
                )
        async with db.reading() as connection:
            kept = (await connection.execute(select(canary_runs.c.id).order_by("id"))).scalars()
            assert list(kept) == ids[-3:]
            assert await connection.scalar(select(func.count()).select_from(canary_runs)) == 3
    finally:
        await db.dispose()
