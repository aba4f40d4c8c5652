"""The viability canary's recorded runs (SQLAlchemy Core, on ``schema.metadata``), and the
few queries around them.

Every canary run, from the ``enclave canary`` command (a Kubernetes CronJob that Prometheus
never scrapes) or the embedded stack's schedule, is one row here; every API replica reads
the newest rows and exports them as the ``enclave_canary_*`` metrics on its ``/metrics``
(``core.metrics.CanaryResults``). ``details`` is the report's JSON form, which holds no
PII: the canary's synthetic value and API key are redacted from it before it is built.
Only the newest :data:`KEEP_RUNS` rows are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    delete,
    desc,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.schema import metadata
from core.db.times import as_utc

__all__ = [
    "KEEP_RUNS",
    "CanaryRunRow",
    "LastCanaryRun",
    "canary_runs",
    "last_canary_run",
    "latest_canary_success",
    "read_canary_runs",
    "record_canary_run",
]

KEEP_RUNS: Final = 1000
"""Rows kept: about a week at the chart's 10-minute schedule."""

canary_runs = Table(
    "canary_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("ok", Boolean, nullable=False, comment="every step passed"),
    Column("failed_step", String(32), nullable=True, comment="the first step that failed"),
    Column("duration_s", Float, nullable=False),
    Column("details", JSON, nullable=False, comment="the report, steps included; no PII"),
    Index(None, "ok", "id"),
)


@dataclass(frozen=True, slots=True)
class CanaryRunRow:
    """One recorded run, as the metrics need it."""

    id: int
    finished_at: datetime
    ok: bool
    duration_s: float


@dataclass(frozen=True, slots=True)
class LastCanaryRun:
    """The newest recorded run, as ``enclave status`` shows it."""

    finished_at: datetime
    ok: bool
    failed_step: str | None
    duration_s: float


async def record_canary_run(  # noqa: PLR0917 - one value per column
    connection: AsyncConnection,
    started_at: datetime,
    finished_at: datetime,
    ok: bool,
    failed_step: str | None,
    duration_s: float,
    details: dict[str, Any],
    *,
    keep: int = KEEP_RUNS,
) -> int:
    """Add one run and drop all but the newest ``keep``; return the new row's id."""
    result = await connection.execute(
        insert(canary_runs).values(
            started_at=as_utc(started_at),
            finished_at=as_utc(finished_at),
            ok=ok,
            failed_step=failed_step,
            duration_s=max(0.0, duration_s),
            details=details,
        )
    )
    (new_id,) = result.inserted_primary_key or (None,)
    if new_id is None:  # pragma: no cover - both dialects return the key
        msg = "the database returned no id for the canary run"
        raise RuntimeError(msg)
    oldest_kept = await connection.scalar(
        select(canary_runs.c.id).order_by(desc(canary_runs.c.id)).offset(keep - 1).limit(1)
    )
    if oldest_kept is not None:
        await connection.execute(delete(canary_runs).where(canary_runs.c.id < oldest_kept))
    return int(new_id)


async def read_canary_runs(
    connection: AsyncConnection, *, after_id: int = 0, limit: int = 200
) -> list[CanaryRunRow]:
    """The newest runs with an id above ``after_id`` (at most ``limit``), oldest first."""
    rows = (
        await connection.execute(
            select(
                canary_runs.c.id,
                canary_runs.c.finished_at,
                canary_runs.c.ok,
                canary_runs.c.duration_s,
            )
            .where(canary_runs.c.id > after_id)
            .order_by(desc(canary_runs.c.id))
            .limit(limit)
        )
    ).all()
    return [
        CanaryRunRow(
            id=row.id, finished_at=as_utc(row.finished_at), ok=row.ok, duration_s=row.duration_s
        )
        for row in reversed(rows)
    ]


async def latest_canary_success(connection: AsyncConnection) -> datetime | None:
    """When the newest passing run finished, or None when none passed (of those kept)."""
    found = await connection.scalar(
        select(canary_runs.c.finished_at)
        .where(canary_runs.c.ok.is_(True))
        .order_by(desc(canary_runs.c.id))
        .limit(1)
    )
    return None if found is None else as_utc(found)


async def last_canary_run(connection: AsyncConnection) -> LastCanaryRun | None:
    """The newest recorded run, passed or not (None when none was recorded)."""
    row = (
        await connection.execute(
            select(
                canary_runs.c.finished_at,
                canary_runs.c.ok,
                canary_runs.c.failed_step,
                canary_runs.c.duration_s,
            )
            .order_by(desc(canary_runs.c.id))
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    return LastCanaryRun(
        finished_at=as_utc(row.finished_at),
        ok=row.ok,
        failed_step=row.failed_step,
        duration_s=row.duration_s,
    )
