"""Streamed exports of the audit log: records, JSONL and CSV lines (``bundle`` signs them).

Every export reads ``batch_size`` records per query by keyset pagination on ``seq`` (never
``OFFSET``, never the whole table), each batch on a short read of its own, up to the chain
head as it was when the export began: memory stays bounded whatever the table's size.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from core.audit.canonical import canonical_json
from core.audit.errors import AuditUnavailable
from core.audit.reading import STORE_ERRORS, record_from_row, select_records
from core.audit.records import AuditRecord, format_time
from core.db import Database, audit_chain_head, audit_log

__all__ = ["CSV_COLUMNS", "ExportFilter", "csv_lines", "iter_records", "jsonl_lines", "record_line"]

CSV_COLUMNS = (
    "seq",
    "recorded_at",
    "tenant",
    "actor",
    "event_type",
    "event",
    "prev_hash",
    "hash",
    "signature",
    "key_id",
)


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which records to export; every condition optional, all must hold."""

    since: datetime | None = None
    """Recorded at or after this instant."""
    until: datetime | None = None
    """Recorded before this instant."""
    tenant: str | None = None
    actor: str | None = None
    event_type: str | None = None
    after_seq: int | None = None
    """Keyset cursor: records with a greater ``seq`` only."""
    up_to_seq: int | None = None
    """Records with ``seq`` at most this."""

    @property
    def contiguous(self) -> bool:
        """Whether the selection is an unbroken run of the chain (only seq bounds)."""
        return all(
            value is None
            for value in (self.since, self.until, self.tenant, self.actor, self.event_type)
        )

    def as_dict(self) -> dict[str, Any]:
        """The conditions set, JSON-ready (for the bundle manifest)."""
        result: dict[str, Any] = {}
        for name in ("since", "until", "tenant", "actor", "event_type", "after_seq", "up_to_seq"):
            value = getattr(self, name)
            if value is not None:
                result[name] = format_time(value) if isinstance(value, datetime) else value
        return result


async def iter_records(
    db: Database, filters: ExportFilter | None = None, *, batch_size: int = 1000
) -> AsyncIterator[AuditRecord]:
    """The matching records in ``seq`` order, read ``batch_size`` at a time."""
    filters = filters or ExportFilter()
    column = audit_log.c
    conditions: list[Any] = []
    if filters.since is not None:
        conditions.append(column.recorded_at >= filters.since)
    if filters.until is not None:
        conditions.append(column.recorded_at < filters.until)
    for name in ("tenant", "actor", "event_type"):
        value = getattr(filters, name)
        if value is not None:
            conditions.append(column[name] == value)
    try:
        async with db.reading() as connection:
            head = (
                await connection.execute(
                    select(audit_chain_head.c.last_seq).where(audit_chain_head.c.id == 1)
                )
            ).scalar_one_or_none()
        end = int(head or 0)
        if filters.up_to_seq is not None:
            end = min(end, filters.up_to_seq)
        cursor = filters.after_seq or 0
        while cursor < end:
            async with db.reading() as connection:
                rows = (
                    await connection.execute(
                        select_records()
                        .where(column.seq > cursor, column.seq <= end, *conditions)
                        .order_by(column.seq)
                        .limit(batch_size)
                    )
                ).all()
            if not rows:
                return
            for row in rows:
                yield record_from_row(row)
            cursor = int(rows[-1][0])
    except STORE_ERRORS as exc:
        msg = f"The audit log cannot be read for export. ({type(exc).__name__})"
        raise AuditUnavailable(msg) from exc


def record_line(record: AuditRecord) -> str:
    """A record as one canonical JSON line (the event as an object), ``\\n``-terminated."""
    return canonical_json(record.as_dict()) + "\n"


async def jsonl_lines(
    db: Database, filters: ExportFilter | None = None, *, batch_size: int = 1000
) -> AsyncIterator[str]:
    """One canonical JSON line per record (``\\n``-terminated), the event as an object."""
    async for record in iter_records(db, filters, batch_size=batch_size):
        yield record_line(record)


async def csv_lines(
    db: Database, filters: ExportFilter | None = None, *, batch_size: int = 1000
) -> AsyncIterator[str]:
    """A header line, then one RFC 4180 line per record (the event as canonical JSON)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(values: Collection[object]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    async for r in iter_records(db, filters, batch_size=batch_size):
        yield line(
            (
                r.seq,
                format_time(r.recorded_at),
                r.tenant,
                r.actor,
                r.event_type,
                r.event_json,
                r.prev_hash,
                r.hash,
                r.signature,
                r.key_id,
            )
        )
