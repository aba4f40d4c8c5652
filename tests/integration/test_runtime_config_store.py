"""Runtime configuration versions on real SQLite and PostgreSQL: saved, activated, rolled
back, and seen by a second API replica (a second store on the same database) within its
polling interval, without restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from api.stores.runtime_config import RuntimeConfigStore
from core.db import Database, config_activations, config_versions, prompt_versions, upgrade
from core.errors import InvalidRequest, NotFound
from core.settings import PathsSettings, Settings
from tests.integration.databases import KINDS, fresh_database_url

pytestmark = pytest.mark.integration

POLL_S = 0.2


class Clock:
    """A hand-moved monotonic clock: the test decides when the snapshot is stale."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(paths=PathsSettings(data_dir=tmp_path))


@pytest.fixture(params=KINDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database_url(request.param, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        db = Database.from_url(url)
        try:
            yield db
        finally:
            await db.dispose()


async def _count(database: Database, table: Any) -> int:
    async with database.reading() as connection:
        return int(await connection.scalar(select(func.count()).select_from(table)) or 0)


async def test_a_saved_version_applies_at_once_in_the_replica_that_saved_it(
    database: Database, settings: Settings
) -> None:
    store = RuntimeConfigStore(database, settings, refresh_s=60.0)
    before = await store.effective("acme")
    assert (before.top_k, before.version) == (4, "g0.t0")

    number = await store.create_version(
        "acme", {"retrieval": {"top_k": 9}}, note="more context", actor="u_admin"
    )
    assert number == 1
    after = await store.effective("acme")
    assert (after.top_k, after.version) == (9, "g0.t1")
    # Other tenants are untouched.
    assert (await store.effective("globex")).top_k == 4
    assert await store.active_number("acme") == 1
    [listed] = await store.versions("acme")
    assert listed["document"] == {"retrieval": {"top_k": 9}}
    assert (listed["note"], listed["created_by"], listed["active"]) == (
        "more context",
        "u_admin",
        True,
    )
    assert datetime.fromisoformat(listed["created_at"]).tzinfo is not None


async def test_another_replica_sees_the_change_within_poll_s(
    database: Database, settings: Settings
) -> None:
    clock = Clock()
    writer = RuntimeConfigStore(database, settings, refresh_s=POLL_S, clock=clock)
    reader = RuntimeConfigStore(database, settings, refresh_s=POLL_S, clock=clock)
    assert (await reader.effective("acme")).engine == "primary"

    await writer.create_version(
        "acme", {"models": {"engine": "fallback"}}, note="primary is slow", actor="u_admin"
    )
    # Still fresh: the reader answers from memory, as it does on every request in between.
    assert (await reader.effective("acme")).engine == "primary"
    clock.advance(POLL_S)
    changed = await reader.effective("acme")
    assert (changed.engine, changed.version) == ("fallback", "g0.t1")

    # A global change reaches every tenant of the other replica.
    await writer.create_version("*", {"retrieval": {"min_score": 0.7}}, note="x", actor="u_p")
    clock.advance(POLL_S)
    assert (await reader.effective("globex")).min_score == 0.7
    assert (await reader.effective("acme")).version == "g1.t1"


async def test_the_snapshot_costs_no_query_while_fresh(
    database: Database, settings: Settings
) -> None:
    clock = Clock()
    store = RuntimeConfigStore(database, settings, refresh_s=POLL_S, clock=clock)
    await store.effective("acme")
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]))

    from sqlalchemy import event

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        for _ in range(50):
            await store.effective("acme")
        assert statements == []
        clock.advance(POLL_S)
        await store.effective("acme")
        # Nothing changed: one cheap query, no reload.
        assert len(statements) == 1
        assert "max(config_activations.id)" in statements[0]
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", record)


async def test_rollback_restores_the_earlier_version(
    database: Database, settings: Settings
) -> None:
    store = RuntimeConfigStore(database, settings, refresh_s=60.0)
    await store.create_version("acme", {"retrieval": {"top_k": 6}}, note="a", actor="u_1")
    await store.create_version("acme", {"retrieval": {"top_k": 12}}, note="b", actor="u_1")
    assert (await store.effective("acme")).top_k == 12

    await store.activate("acme", 1, actor="u_2", action="rollback")
    rolled = await store.effective("acme")
    assert (rolled.top_k, rolled.version) == (6, "g0.t1")
    assert [(v["number"], v["active"]) for v in await store.versions("acme")] == [
        (2, False),
        (1, True),
    ]
    # Activating 0 removes the overrides; the history keeps every switch.
    await store.activate("acme", 0, actor="u_2", action="rollback")
    assert (await store.effective("acme")).version == "g0.t0"
    assert await store.active_number("acme") == 0
    async with database.reading() as connection:
        actions = (
            await connection.execute(
                select(config_activations.c.number, config_activations.c.action).order_by(
                    config_activations.c.id
                )
            )
        ).all()
    assert [tuple(a) for a in actions] == [
        (1, "activate"),
        (2, "activate"),
        (1, "rollback"),
        (None, "rollback"),
    ]
    # Numbers keep counting after a rollback.
    assert await store.create_version("acme", {}, note="c", actor="u_1") == 3

    with pytest.raises(NotFound, match="No configuration version 7 for tenant 'acme'"):
        await store.activate("acme", 7, actor="u_2", action="activate")


async def test_a_version_that_no_longer_fits_the_settings_is_not_activated(
    database: Database, settings: Settings
) -> None:
    store = RuntimeConfigStore(database, settings, refresh_s=60.0)
    await store.create_version("acme", {"models": {"engine": "fallback"}}, note="a", actor="u")
    await store.create_version("acme", {}, note="b", actor="u")
    # The deployment has since lost its fallback engine.
    shrunk = settings.model_copy(update={"llm": settings.llm.model_copy(update={"fallback": None})})
    restarted = RuntimeConfigStore(database, shrunk, refresh_s=60.0)
    with pytest.raises(InvalidRequest) as caught:
        await restarted.activate("acme", 1, actor="u", action="rollback")
    assert "Version 1 no longer fits this deployment's settings" in caught.value.detail
    assert "models.engine: 'fallback' needs llm.fallback configured" in caught.value.detail
    assert await restarted.active_number("acme") == 2
    assert await _count(database, config_activations) == 2


async def test_a_database_error_keeps_the_last_snapshot(
    database: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    store = RuntimeConfigStore(database, settings, refresh_s=POLL_S, clock=clock)
    await store.create_version("acme", {"retrieval": {"top_k": 11}}, note="a", actor="u_1")
    assert (await store.effective("acme")).top_k == 11

    async with database.transaction() as connection:
        await connection.exec_driver_sql("DROP TABLE config_activations")
    clock.advance(POLL_S)
    with caplog.at_level("WARNING", logger="enclave.api.runtime_config"):
        kept = await store.effective("acme")
    assert (kept.top_k, kept.version) == (11, "g0.t1")
    assert "keeping the last snapshot" in caplog.text
    assert "acme" not in caplog.text


async def test_a_store_that_never_read_the_database_runs_on_the_settings(
    tmp_path: Path, settings: Settings
) -> None:
    # A database without the tables (never migrated): every read fails.
    database = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    store = RuntimeConfigStore(database, settings)
    runtime = await store.effective("acme")
    assert (runtime.top_k, runtime.version) == (4, "g0.t0")
    await database.dispose()


async def test_an_invalid_document_stores_nothing(database: Database, settings: Settings) -> None:
    store = RuntimeConfigStore(database, settings, refresh_s=60.0)
    with pytest.raises(InvalidRequest) as caught:
        await store.create_version(
            "acme",
            {"retrieval": {"top_k": 99}, "generation": {"default_max_tokens": "lots"}},
            note="bad",
            actor="u_1",
        )
    assert "retrieval.top_k: must be at most 20 (got 99)" in caught.value.detail
    assert "generation.default_max_tokens: must be a whole number" in caught.value.detail
    assert await _count(database, config_versions) == 0
    assert await _count(database, config_activations) == 0
    assert (await store.effective("acme")).version == "g0.t0"


async def test_a_rollout_must_name_a_prompt_version_of_the_tenant(
    database: Database, settings: Settings
) -> None:
    store = RuntimeConfigStore(database, settings, refresh_s=60.0)
    now = datetime.now(UTC)
    async with database.transaction() as connection:
        for version_id, tenant in (("pv_0a0a", "globex"), ("pv_0b0b", "acme"), ("pv_0c0c", "*")):
            await connection.execute(
                insert(prompt_versions).values(
                    id=version_id,
                    tenant=tenant,
                    client="",
                    name="chat",
                    number=1,
                    parts={"system": "Be brief."},
                    variables={},
                    note="",
                    created_by="u_1",
                    created_at=now,
                )
            )

    def canary(version_id: str) -> dict[str, Any]:
        return {"rollout": {"percent": 10, "prompt_version": version_id}}

    with pytest.raises(InvalidRequest, match="no prompt version 'pv_0a0a' of tenant 'acme'"):
        await store.create_version("acme", canary("pv_0a0a"), note="n", actor="u_1")
    assert await _count(database, config_versions) == 0
    await store.create_version("acme", canary("pv_0b0b"), note="own", actor="u_1")
    await store.create_version("acme", canary("pv_0c0c"), note="global", actor="u_1")
    rollout = (await store.effective("acme")).rollout
    assert rollout is not None
    assert (rollout.percent, rollout.prompt_version) == (10, "pv_0c0c")


async def test_concurrent_saves_get_distinct_numbers(
    database: Database, settings: Settings
) -> None:
    stores = [RuntimeConfigStore(database, settings) for _ in range(4)]
    numbers = await asyncio.gather(
        *(
            s.create_version("acme", {"retrieval": {"top_k": i + 1}}, note="n", actor="u")
            for i, s in enumerate(stores)
        )
    )
    assert sorted(numbers) == [1, 2, 3, 4]
