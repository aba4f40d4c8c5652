"""Alembic migrations, run from code (``enclave db upgrade``; the embedded launcher).

The URL is handed to ``env.py`` through the config's attributes, never through
``alembic.ini`` options, so a password in it is neither interpolated nor written anywhere.
Upgrades run in their own event loop: call :func:`upgrade` from synchronous code (or
``asyncio.to_thread``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.engine import ensure_sqlite_folder
from core.errors import ConfigurationError

__all__ = [
    "alembic_config",
    "check_schema",
    "current_revision",
    "head_revision",
    "upgrade",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic configuration for ``url`` (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` to ``revision`` (idempotent)."""
    ensure_sqlite_folder(url)
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    if head is None:  # pragma: no cover - the history is never empty
        msg = "no migrations found"
        raise RuntimeError(msg)
    return head


def _has_version_table(connection: Connection) -> bool:
    return inspect(connection).has_table("alembic_version")


async def current_revision(connection: AsyncConnection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    if not await connection.run_sync(_has_version_table):
        return None
    row = (await connection.execute(text("SELECT version_num FROM alembic_version"))).first()
    return None if row is None else str(row[0])


async def check_schema(connection: AsyncConnection) -> None:
    """Raise ``ConfigurationError`` unless the database is at this code's schema revision."""
    current = await current_revision(connection)
    head = head_revision()
    if current != head:
        msg = (
            f"The database schema is at revision {current or '(none)'}; this version of "
            f"Enclave needs {head}. Run `enclave db upgrade` (in a cluster, the migration "
            "Job) and start again."
        )
        raise ConfigurationError(msg)
