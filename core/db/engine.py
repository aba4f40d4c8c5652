"""The async engine: SQLite with WAL and foreign keys, or PostgreSQL through asyncpg."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from core.errors import ConfigurationError
from core.settings import Settings

__all__ = ["Database", "database_url", "ensure_sqlite_folder"]


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL: ``url_file``, else ``url``, else SQLite in the data dir."""
    db = settings.database
    if db.url_file is not None:
        try:
            url = db.url_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            msg = f"database.url_file {db.url_file} cannot be read: {exc.strerror}."
            raise ConfigurationError(msg) from exc
        if not url:
            msg = f"database.url_file {db.url_file} is empty."
            raise ConfigurationError(msg)
        return url
    if db.url is not None:
        return db.url.get_secret_value()
    return f"sqlite+aiosqlite:///{settings.paths.data_dir / 'enclave.db'}"


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite database file (SQLite creates the file, not folders)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; the busy timeout makes writers from other
    # processes (API, retriever, CLI) wait for each other instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _unreachable_as_dbapi_error(
    dialect: Any, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> Any:
    """Connect; a refused or timed-out connection raises the driver's ``OperationalError``.

    asyncpg raises a plain ``OSError`` (connection refused, host unreachable) or
    ``TimeoutError`` when the server is down, and SQLAlchemy passes those through unwrapped,
    so they would escape every ``SQLAlchemyError`` handler: a login during a PostgreSQL
    restart was a 500 instead of a 503 with ``Retry-After``. As the driver's own error,
    SQLAlchemy wraps it as ``sqlalchemy.exc.OperationalError`` like any other store failure.
    """
    try:
        return dialect.connect(*cargs, **cparams)
    except (OSError, TimeoutError) as exc:
        msg = f"cannot connect to the database: {type(exc).__name__}: {exc}"
        raise dialect.loaded_dbapi.OperationalError(msg) from exc


class Database:
    """An async engine and the transactions over it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is SQLite (one writer at a time)."""
        return self.engine.dialect.name == "sqlite"

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 5, connect_timeout_s: float = 5.0) -> Database:
        """Connect lazily (no I/O until the first query)."""
        if url.startswith("sqlite"):
            ensure_sqlite_folder(url)
            # No pool: a SQLite connection is a file handle (cheap to open), and pooled
            # aiosqlite connections are tied to the event loop that opened them.
            engine = create_async_engine(
                url, connect_args={"timeout": connect_timeout_s}, poolclass=NullPool
            )
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(
                url,
                pool_size=pool_size,
                pool_pre_ping=True,
                connect_args={"timeout": connect_timeout_s},
            )
            event.listen(engine.sync_engine, "do_connect", _unreachable_as_dbapi_error)
        return cls(engine)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """The store the settings name."""
        db = settings.database
        return cls.from_url(
            database_url(settings),
            pool_size=db.pool_size,
            connect_timeout_s=db.connect_timeout_s,
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction: committed on success, rolled back on error."""
        async with self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads."""
        async with self.engine.connect() as connection:
            yield connection

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
