"""The append-only, hash-chained, signed audit log in the SQL store.

Writing. :meth:`AuditLog.append` runs inside a transaction the caller owns, so that an
exchange's conversation rows and its audit record commit together or not at all. It locks
the chain head (``audit_chain_head``, one row), takes ``seq = last + 1`` and the previous
hash from it, signs the new record, inserts it and moves the head. Writers are serialised
by that lock:

- PostgreSQL: ``SELECT ... FOR UPDATE`` on the head row, under ``lock_timeout``
  (``audit.lock_timeout_s``), so a stuck writer makes the others fail with 503, not hang.
- SQLite: the first statement is a no-op ``UPDATE`` of the head row. It takes the database's
  write lock before the head is read (the driver opens a deferred transaction at the first
  write), so no two writers can read the same head; others wait up to the busy timeout.

The lock is held until the caller commits: append last, then commit at once — never hold
the transaction open while a model generates.

Failure. Any database error (or a refused connection) during the append, or around the
transaction opened by :meth:`AuditLog.transaction`, becomes ``AuditUnavailable`` (503); the
transaction rolls back, so neither the audit record nor the conversation rows exist.

Reading. :meth:`AuditLog.verify` streams records in ``seq`` order in batches (keyset
pagination, bounded memory) and reports the first broken record: a missing ``seq``, a
broken link, a hash that does not match the fields, an unknown key or a bad signature;
over the whole chain it also checks that the head names the last record.

Erasure and retention (how to wire it). Records are never edited or deleted: that would
break the chain, which is the point. Instead:

1. Audit events never hold PII. They carry pseudonymous ids (tenant, actor, subject),
   placeholders (``<PERSON_1>``), counts, ids and lineage — never message text or a raw
   value. The caller builds them that way; this module cannot tell a name from an id.
2. Erasing a subject deletes their conversation content from ``messages`` /
   ``conversations`` (the history store), and appends one ``erasure`` event
   (``event_type="erasure"``, ``{"subject": <pseudonymous id>, "scope": ..., "rows": n}``)
   in the same transaction. The older records stay as PII-free tombstones of what happened,
   and the chain still verifies.
3. Retention of the history tables is the same: delete the rows, append a ``retention``
   event naming the cut-off and counts.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.audit.canonical import canonical_json
from core.audit.checkpoint import Checkpoint, compare_chain
from core.audit.errors import AuditUnavailable
from core.audit.reading import STORE_ERRORS, VerifyReport, verify_chain
from core.audit.records import AuditRecord, record_hash
from core.audit.signing import AuditSigner, AuditVerifier
from core.db import Database, audit_chain_head, audit_log
from core.settings import Settings

__all__ = ["AuditEntry", "AuditLog", "VerifyReport"]

_LIMITS = {"tenant": 64, "actor": 128, "event_type": 64}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One event to append: who, in which tenant, what."""

    tenant: str
    actor: str
    event_type: str
    event: dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _unavailable(exc: BaseException) -> AuditUnavailable:
    return AuditUnavailable(
        "The audit log cannot be written, so nothing was recorded; try again shortly. "
        f"({type(exc).__name__})"
    )


class AuditLog:
    """Appends signed, chained records and verifies the chain."""

    def __init__(
        self,
        signer: AuditSigner,
        verifier: AuditVerifier | None = None,
        *,
        batch_size: int = 1000,
        lock_timeout_s: float = 5.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.signer = signer
        self.verifier = verifier if verifier is not None else AuditVerifier([signer.public_key])
        self.batch_size = batch_size
        self.lock_timeout_ms = max(1, int(lock_timeout_s * 1000))
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        """The log with the configured key (created on first use where allowed)."""
        signer = AuditSigner.from_settings(settings)
        return cls(
            signer,
            AuditVerifier.from_settings(settings, signer),
            batch_size=settings.audit.verify_batch_size,
            lock_timeout_s=settings.audit.lock_timeout_s,
        )

    @asynccontextmanager
    async def transaction(self, db: Database) -> AsyncIterator[AsyncConnection]:
        """A transaction for an exchange and its audit record; store failures → 503.

        Connecting, every statement in the block and the commit are covered: if any fails
        the transaction is rolled back and ``AuditUnavailable`` is raised.
        """
        try:
            async with db.transaction() as connection:
                yield connection
        except STORE_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def append(
        self,
        connection: AsyncConnection,
        *,
        tenant: str,
        actor: str,
        event_type: str,
        event: dict[str, Any],
    ) -> AuditRecord:
        """Append one record inside the caller's transaction (committed with it)."""
        records = await self.append_many(connection, [AuditEntry(tenant, actor, event_type, event)])
        return records[0]

    async def append_many(
        self, connection: AsyncConnection, entries: Sequence[AuditEntry]
    ) -> list[AuditRecord]:
        """Append several records in order, under one lock, inside the caller's transaction.

        Raises ``ValueError`` for an event that is not plain JSON or a field that is too
        long (a caller's bug, checked before anything is written) and ``AuditUnavailable``
        when the store fails.
        """
        prepared = [self._prepare(entry) for entry in entries]
        if not prepared:
            return []
        try:
            last_seq, last_hash, last_time = await self._lock_head(connection)
            # Never earlier than the record before: time filters then cut the chain cleanly.
            recorded_at = max(self._clock(), last_time)
            records: list[AuditRecord] = []
            for entry, event_json in prepared:
                last_seq += 1
                record = self._sign(last_seq, recorded_at, entry, event_json, last_hash)
                records.append(record)
                last_hash = record.hash
            await connection.execute(
                insert(audit_log),
                [
                    {
                        "seq": r.seq,
                        "recorded_at": r.recorded_at,
                        "tenant": r.tenant,
                        "actor": r.actor,
                        "event_type": r.event_type,
                        "event": r.event_json,
                        "prev_hash": r.prev_hash,
                        "hash": r.hash,
                        "signature": r.signature,
                        "key_id": r.key_id,
                    }
                    for r in records
                ],
            )
            await connection.execute(
                update(audit_chain_head)
                .where(audit_chain_head.c.id == 1)
                .values(last_seq=last_seq, last_hash=last_hash, updated_at=recorded_at)
            )
        except STORE_ERRORS as exc:
            raise _unavailable(exc) from exc
        return records

    def _prepare(self, entry: AuditEntry) -> tuple[AuditEntry, str]:
        for name, limit in _LIMITS.items():
            value = getattr(entry, name)
            if not isinstance(value, str) or not value or len(value) > limit:
                msg = f"audit {name} must be a non-empty string of at most {limit} characters"
                raise ValueError(msg)
        if not isinstance(entry.event, dict):
            msg = "an audit event must be a JSON object"
            raise TypeError(msg)
        return entry, canonical_json(entry.event)

    def _sign(
        self, seq: int, recorded_at: datetime, entry: AuditEntry, event_json: str, prev: str
    ) -> AuditRecord:
        key_id = self.signer.key_id
        digest = record_hash(
            prev_hash=prev,
            seq=seq,
            recorded_at=recorded_at,
            tenant=entry.tenant,
            actor=entry.actor,
            event_type=entry.event_type,
            event_json=event_json,
            key_id=key_id,
        )
        signature = base64.b64encode(self.signer.sign(bytes.fromhex(digest))).decode("ascii")
        return AuditRecord(
            seq=seq,
            recorded_at=recorded_at,
            tenant=entry.tenant,
            actor=entry.actor,
            event_type=entry.event_type,
            event_json=event_json,
            prev_hash=prev,
            hash=digest,
            signature=signature,
            key_id=key_id,
        )

    async def _lock_head(self, connection: AsyncConnection) -> tuple[int, str, datetime]:
        head = audit_chain_head.c
        postgres = connection.dialect.name == "postgresql"
        previous_timeout = None
        if postgres:
            previous_timeout = (
                await connection.execute(
                    text(
                        "SELECT current_setting('lock_timeout'), "
                        "set_config('lock_timeout', :timeout, true)"
                    ),
                    {"timeout": f"{self.lock_timeout_ms}ms"},
                )
            ).scalar_one()
        else:
            # SQLite: take the write lock before reading the head (see the module docstring).
            await connection.execute(
                update(audit_chain_head)
                .where(head.id == 1)
                .values(last_seq=audit_chain_head.c.last_seq)
            )
        row = (
            await connection.execute(
                select(head.last_seq, head.last_hash, head.updated_at)
                .where(head.id == 1)
                .with_for_update()
            )
        ).first()
        if postgres:
            # Restore the caller's lock timeout for the rest of its transaction.
            await connection.execute(
                text("SELECT set_config('lock_timeout', :timeout, true)"),
                {"timeout": previous_timeout},
            )
        if row is None:
            msg = (
                "The audit chain head row is missing: the schema was not created by "
                "`enclave db upgrade`, or the table was tampered with. Nothing was recorded."
            )
            raise AuditUnavailable(msg)
        return int(row[0]), str(row[1]), _as_utc(row[2])

    async def verify(
        self,
        db: Database,
        *,
        start_seq: int | None = None,
        end_seq: int | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> VerifyReport:
        """Recompute the chain from ``start_seq`` to ``end_seq`` (default: all of it).

        Reads ``batch_size`` records per query; the report names the first broken record.
        With a ``checkpoint`` (``core.audit.checkpoint``), an intact chain must also still
        hold the head the checkpoint saw: a cut-off tail is reported as ``truncated``.
        Raises ``AuditUnavailable`` if the store cannot be read.
        """
        try:
            report = await verify_chain(
                db,
                self.verifier,
                start_seq=start_seq,
                end_seq=end_seq,
                batch_size=self.batch_size,
            )
            if checkpoint is None or not report.ok:
                return report
            problem = await compare_chain(db, checkpoint, self.verifier)
            if problem is None:
                return report
            return VerifyReport(False, report.checked, report.first_seq, report.last_seq, problem)
        except STORE_ERRORS as exc:
            msg = f"The audit log cannot be read for verification. ({type(exc).__name__})"
            raise AuditUnavailable(msg) from exc
