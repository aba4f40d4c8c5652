"""Alembic's history creates exactly the tables of ``core.db.schema.metadata``.

On a fresh SQLite file and a fresh PostgreSQL database: ``upgrade head`` then Alembic's
``compare_metadata`` finds no difference, and a second upgrade changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, select

from core.db import (
    GENESIS_HASH,
    Database,
    audit_chain_head,
    current_revision,
    head_revision,
    metadata,
    upgrade,
)
from tests.integration.databases import KINDS, fresh_database_url

pytestmark = pytest.mark.integration


@pytest.fixture(params=KINDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database_url(request.param, tmp_path) as database_url:
        yield database_url


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _inspect(url: str) -> tuple[list[Any], str | None, list[Any]]:
    db = Database.from_url(url)
    try:
        async with db.reading() as connection:
            differences = await connection.run_sync(_differences)
            revision = await current_revision(connection)
            heads = (await connection.execute(select(audit_chain_head))).all()
    finally:
        await db.dispose()
    return differences, revision, [tuple(row) for row in heads]


async def test_upgrade_creates_exactly_the_schema(url: str) -> None:
    await asyncio.to_thread(upgrade, url)
    differences, revision, heads = await _inspect(url)
    assert differences == []
    assert revision == head_revision() == "0008"
    assert [(row[0], row[1], row[2]) for row in heads] == [(1, 0, GENESIS_HASH)]


async def test_upgrade_is_idempotent(url: str) -> None:
    await asyncio.to_thread(upgrade, url)
    await asyncio.to_thread(upgrade, url)
    differences, revision, heads = await _inspect(url)
    assert differences == []
    assert revision == "0008"
    # A second upgrade must not seed a second chain head.
    assert len(heads) == 1
