"""The owner-only history vaults on SQLite and PostgreSQL: data keys made once under
concurrency (``ON CONFLICT DO NOTHING``), vaults stored as bytes, the cursor of older pages
over ``timestamptz``, erasure shredding the key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.stores.history import ConversationStore, StoredMessage
from api.stores.vault_keys import DeploymentKey, HistoryKeyring
from core.db import Database, history_keys, upgrade
from tests.integration.databases import KINDS, fresh_database_url

pytestmark = pytest.mark.integration

CITY = "Lisbon"


@pytest.fixture(params=KINDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database_url(request.param, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        db = Database.from_url(url)
        try:
            yield db
        finally:
            await db.dispose()


async def _record(store: ConversationStore, db: Database, n: int) -> str:
    async with db.transaction() as connection:
        conversation, _ = await store.record_exchange(
            connection,
            tenant="acme",
            user_id="u1",
            conversation_id=None,
            new_messages=[StoredMessage("user", f"Leave {n} in <LOCATION_1>")],
            vault={"<LOCATION_1>": CITY},
        )
    return conversation


async def test_concurrent_first_answers_share_one_key_and_pages_follow(database: Database) -> None:
    store = ConversationStore(database, HistoryKeyring(DeploymentKey.generate()))
    made = await asyncio.gather(*(_record(store, database, n) for n in range(5)))
    async with database.reading() as connection:
        keys = (await connection.execute(select(func.count()).select_from(history_keys))).scalar()
    assert keys == 1
    seen: list[str] = []
    titles: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_conversations("acme", "u1", limit=2, before=cursor)
        seen += [c["id"] for c in page]
        titles += [c["title"] for c in page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made)
    assert len(seen) == 5
    assert all(title.endswith(f"in {CITY}") for title in titles)

    async with database.transaction() as connection:
        assert await store.erase_user(connection, "acme", "u1") == 5
    async with database.reading() as connection:
        assert (await connection.execute(select(history_keys))).all() == []
