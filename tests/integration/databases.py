"""Fresh databases for integration tests: a SQLite file, or a new PostgreSQL database.

Use :func:`fresh_database_url` in a fixture parametrised over :data:`KINDS`; a PostgreSQL
database gets a unique name and is dropped (forcibly) when the block ends.
``ENCLAVE_TEST_POSTGRES_URL`` names the server (default: trust auth on 127.0.0.1:5432).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from core.db import Database
from core.db.engine import _sqlite_pragmas

__all__ = ["KINDS", "PG_URL", "fresh_database_url", "open_database"]

KINDS = ("sqlite", "postgresql")
PG_URL = os.environ.get(
    "ENCLAVE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def _admin_dsn() -> str:
    return PG_URL.replace("postgresql+asyncpg", "postgresql")


async def create_postgres_database() -> tuple[str, str]:
    """Create a uniquely named database; return its name and SQLAlchemy URL."""
    import asyncpg

    name = f"enclave_test_{secrets.token_hex(4)}"
    connection = await asyncpg.connect(_admin_dsn())
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name, PG_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_postgres_database(name: str) -> None:
    """Drop a database made by :func:`create_postgres_database`, closing its sessions."""
    import asyncpg

    connection = await asyncpg.connect(_admin_dsn())
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@asynccontextmanager
async def fresh_database_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database of ``kind`` (``sqlite`` or ``postgresql``)."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'enclave.db'}"
        return
    if kind != "postgresql":
        msg = f"unknown database kind {kind!r}"
        raise ValueError(msg)
    name, url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(name)


def open_database(url: str, *, pool_size: int = 5) -> Database:
    """A :class:`Database` with room for ``pool_size`` connections on SQLite too.

    ``Database.from_url`` sizes the pool for PostgreSQL only; concurrency tests need every
    writer on a connection of its own on both.
    """
    if not url.startswith("sqlite"):
        return Database.from_url(url, pool_size=pool_size)
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=0, connect_args={"timeout": 30.0}
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return Database(engine)
