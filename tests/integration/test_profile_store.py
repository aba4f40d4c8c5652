"""The profile store on SQLite and PostgreSQL: defaults, create then replace, one row per
user and tenant, erasure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.stores.profiles import Profile, ProfileStore
from core.db import Database, upgrade, user_profiles
from tests.integration.databases import KINDS, fresh_database_url, open_database

pytestmark = pytest.mark.integration


@pytest.fixture(params=KINDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database_url(request.param, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        database = open_database(url)
        yield database
        await database.dispose()


async def rows(db: Database) -> int:
    async with db.reading() as connection:
        return int(
            (await connection.execute(select(func.count()).select_from(user_profiles))).scalar_one()
        )


async def test_defaults_then_create_then_replace(db: Database) -> None:
    store = ProfileStore(db)
    assert await store.get("default", "u1") == Profile()

    first = await store.put("default", "u1", Profile("Ana Silva", "pt-BR", "handbook"))
    read = await store.get("default", "u1")
    assert (read.display_name, read.language, read.default_knowledge_base) == (
        "Ana Silva",
        "pt-BR",
        "handbook",
    )
    assert read.to_json()["updated_at"] == first.to_json()["updated_at"]
    assert read.to_json()["updated_at"].endswith("Z")

    await store.put("default", "u1", Profile("Ana", "de", None))
    read = await store.get("default", "u1")
    assert (read.display_name, read.language, read.default_knowledge_base) == ("Ana", "de", None)
    assert await rows(db) == 1


async def test_profiles_are_per_tenant_and_user(db: Database) -> None:
    store = ProfileStore(db)
    await store.put("default", "u1", Profile("One", "fr", None))
    await store.put("globex", "u1", Profile("Other tenant", "it", None))
    await store.put("default", "u2", Profile("Two", "nl", None))
    assert (await store.get("default", "u1")).display_name == "One"
    assert (await store.get("globex", "u1")).display_name == "Other tenant"
    assert (await store.get("default", "u2")).language == "nl"
    assert await rows(db) == 3


async def test_erase_removes_only_that_profile(db: Database) -> None:
    store = ProfileStore(db)
    await store.put("default", "u1", Profile("One", "fr", None))
    await store.put("default", "u2", Profile("Two", "fr", None))
    assert await store.erase("default", "u1") is True
    assert await store.erase("default", "u1") is False
    assert await store.get("default", "u1") == Profile()
    assert (await store.get("default", "u2")).display_name == "Two"
