"""Evaluation runs in the SQL store (SQLite and PostgreSQL): written by ``enclave eval run``,
read back newest first per tenant with their score steps, and through ``GET /v1/evals``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.di import Provide
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from api.errors import exception_handlers
from api.routes.evals import EvalController
from api.security import Principal
from api.stores.evals import EvalRun, EvalStore
from core.db import Database, upgrade
from core.errors import InvalidRequest
from core.settings import PathsSettings, Settings
from tests.fakes import TestKeys, build_services
from tests.integration.databases import KINDS, fresh_database_url

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(params=KINDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database_url(request.param, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        db = Database.from_url(url)
        yield db
        await db.dispose()


def run(
    run_id: str,
    score: float,
    *,
    day: int,
    dataset: str = "handbook",
    tenant: str = "acme",
    prompt: str = "prm_a",
) -> EvalRun:
    started = T0 + timedelta(days=day)
    return EvalRun(
        id=run_id,
        dataset=dataset,
        tenant=tenant,
        started_at=started,
        finished_at=started + timedelta(minutes=4),
        prompt_version=prompt,
        model="smollm2-135m",
        config_version="cfg_3",
        cases=20,
        passed=round(score * 20),
        score=score,
        details={"cases": {"q001": {"passed": True, "failures": []}}, "notes": []},
    )


async def test_runs_come_back_newest_first_per_tenant_with_what_was_written(
    database: Database,
) -> None:
    store = EvalStore(database)
    for written in (
        run("r1", 0.9, day=0),
        run("r3", 0.6, day=2, prompt="prm_b"),
        run("r2", 0.85, day=1),
        run("x1", 0.1, day=3, tenant="globex"),
        run("s1", 1.0, day=4, dataset="suites"),
    ):
        await store.record(written)

    listed = await store.list_runs(tenant="acme")
    assert [r.id for r in listed] == ["s1", "r3", "r2", "r1"]
    newest_handbook = listed[1]
    assert newest_handbook == run("r3", 0.6, day=2, prompt="prm_b")  # every column round-trips
    assert newest_handbook.started_at.tzinfo is not None
    assert [r.id for r in await store.list_runs(tenant="acme", dataset="handbook", limit=2)] == [
        "r3",
        "r2",
    ]
    assert [r.id for r in await store.list_runs(tenant="globex")] == ["x1"]
    assert len(await store.list_runs(tenant=None)) == 5


async def test_the_history_marks_a_step_even_when_the_previous_run_is_off_the_page(
    database: Database,
) -> None:
    store = EvalStore(database)
    await store.record(run("r1", 0.9, day=0))
    await store.record(run("r2", 0.6, day=1, prompt="prm_b"))
    await store.record(run("o1", 0.1, day=2, tenant="globex"))  # another tenant: not "previous"
    await store.record(run("r3", 0.62, day=3, prompt="prm_b"))

    history = await store.history(tenant="acme", dataset="handbook", limit=2)
    assert [(r.id, None if s is None else s.previous_id) for r, s in history] == [
        ("r3", None),
        ("r2", "r1"),  # r1 is not on the page, yet r2's drop is marked
    ]
    step = history[1][1]
    assert step is not None
    assert step.changed == ("prompt_version",)
    assert round(step.delta, 6) == -0.3


async def test_scores_outside_zero_to_one_and_bad_limits_are_refused(database: Database) -> None:
    store = EvalStore(database)
    with pytest.raises(InvalidRequest, match="between 0 and 1"):
        await store.record(run("bad", 1.5, day=0))
    with pytest.raises(InvalidRequest, match="limit must be between 1"):
        await store.list_runs(tenant="acme", limit=0)
    assert await store.list_runs(tenant=None) == []


async def _app(database: Database, tenant: str, tmp_path: Path) -> Litestar:
    principal = Principal(
        subject="u_admin", tenant=tenant, roles=frozenset({"tenant_admin"}), auth_method="api_key"
    )
    # The test client serves on an event loop of its own: the app gets its own engine,
    # without a pool, so that no connection crosses loops.
    url = database.engine.url.render_as_string(hide_password=False)
    own = Database(create_async_engine(url, poolclass=NullPool))
    settings = Settings(paths=PathsSettings(data_dir=tmp_path))
    services = build_services(settings, await TestKeys.issue(), own)
    return Litestar(
        route_handlers=[EvalController],
        dependencies={
            "principal": Provide(lambda: principal, sync_to_thread=False),
            "services": Provide(lambda: services, sync_to_thread=False),
        },
        exception_handlers=exception_handlers,
    )


async def test_get_evals_lists_the_callers_tenant_only_with_steps(
    database: Database, tmp_path: Path
) -> None:
    store = EvalStore(database)
    await store.record(run("r1", 0.9, day=0))
    await store.record(run("r2", 0.7, day=1, prompt="prm_b"))
    await store.record(run("x1", 0.5, day=2, tenant="globex"))

    async with AsyncTestClient(app=await _app(database, "acme", tmp_path)) as client:
        response = await client.get("/v1/evals", params={"dataset": "handbook", "limit": 10})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert [d["id"] for d in data] == ["r2", "r1"]
        assert data[0]["started_at"] == "2026-11-02T08:00:00Z"
        assert data[0]["prompt_version"] == "prm_b"
        assert data[0]["score"] == 0.7
        assert data[0]["step"]["changed"] == ["prompt_version"]
        assert data[0]["step"]["direction"] == "down"
        assert data[1]["step"] is None
        too_many = await client.get("/v1/evals", params={"limit": 100_000})
        assert too_many.status_code == 400
