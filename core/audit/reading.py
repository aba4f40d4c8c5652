"""Reading the audit log back: rows to records, and the verification walk along the chain.

Records are streamed in ``seq`` order, ``batch_size`` per query by keyset pagination (each
batch on a short read of its own), so verifying a chain of any length takes bounded memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from core.audit.records import AuditRecord, Problem, check_record
from core.audit.signing import AuditVerifier
from core.db import GENESIS_HASH, Database, audit_chain_head, audit_log

__all__ = ["STORE_ERRORS", "VerifyReport", "record_from_row", "select_records", "verify_chain"]

STORE_ERRORS: tuple[type[BaseException], ...] = (DBAPIError, PoolTimeout, OSError, TimeoutError)
"""What "the audit store cannot be reached or written" looks like from SQLAlchemy/asyncpg."""

_COLUMNS = (
    audit_log.c.seq,
    audit_log.c.recorded_at,
    audit_log.c.tenant,
    audit_log.c.actor,
    audit_log.c.event_type,
    audit_log.c.event,
    audit_log.c.prev_hash,
    audit_log.c.hash,
    audit_log.c.signature,
    audit_log.c.key_id,
)


def record_from_row(row: Sequence[Any]) -> AuditRecord:
    """An :class:`AuditRecord` from a row selected with the audit columns, in order."""
    seq, recorded_at, tenant, actor, event_type, event, prev, digest, signature, key = row
    if recorded_at.tzinfo is None:
        recorded_at = recorded_at.replace(tzinfo=UTC)
    return AuditRecord(
        seq=int(seq),
        recorded_at=recorded_at,
        tenant=tenant,
        actor=actor,
        event_type=event_type,
        event_json=event,
        prev_hash=prev,
        hash=digest,
        signature=signature,
        key_id=key,
    )


def select_records() -> Any:
    """``SELECT`` of the audit columns in :func:`record_from_row`'s order."""
    return select(*_COLUMNS)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of verifying the chain (or a range of it)."""

    ok: bool
    checked: int
    first_seq: int | None
    last_seq: int | None
    problem: Problem | None = None

    def describe(self) -> str:
        """One line for people."""
        if self.problem is not None:
            return f"BROKEN at {self.problem.describe()} ({self.checked} records intact before)"
        if self.checked == 0:
            return "OK: no records in range"
        return f"OK: {self.checked} records, seq {self.first_seq}–{self.last_seq}"


async def verify_chain(
    db: Database,
    verifier: AuditVerifier,
    *,
    start_seq: int | None = None,
    end_seq: int | None = None,
    batch_size: int = 1000,
) -> VerifyReport:
    """Recompute the chain from ``start_seq`` to ``end_seq`` (see ``AuditLog.verify``)."""
    head = audit_chain_head.c
    async with db.reading() as connection:
        # One statement, one snapshot: the head and the highest seq agree.
        state = (
            await connection.execute(
                select(
                    head.last_seq,
                    head.last_hash,
                    select(func.max(audit_log.c.seq)).scalar_subquery(),
                ).where(head.id == 1)
            )
        ).first()
    if state is None:
        missing = Problem(None, "head_mismatch", "the chain head row is missing")
        return VerifyReport(False, 0, None, None, missing)
    head_seq, head_hash = int(state[0]), str(state[1])
    max_seq = None if state[2] is None else int(state[2])
    start = max(1, start_seq or 1)
    end = head_seq if end_seq is None else min(end_seq, head_seq)

    walk = _Walk(cursor=start - 1, expected_prev=GENESIS_HASH)
    if 1 < start <= end:
        async with db.reading() as connection:
            before = (
                await connection.execute(
                    select(audit_log.c.hash).where(audit_log.c.seq == start - 1)
                )
            ).scalar_one_or_none()
        if before is None:
            return walk.fail(_missing(start - 1))
        walk.expected_prev = str(before)

    while walk.cursor < end:
        async with db.reading() as connection:
            rows = (
                await connection.execute(
                    select_records()
                    .where(audit_log.c.seq > walk.cursor, audit_log.c.seq <= end)
                    .order_by(audit_log.c.seq)
                    .limit(batch_size)
                )
            ).all()
        if not rows:
            return walk.fail(_missing(walk.cursor + 1))
        for row in rows:
            problem = walk.step(record_from_row(row), verifier)
            if problem is not None:
                return walk.fail(problem)

    if end_seq is None or end_seq >= head_seq:
        problem = walk.tail_problem(head_seq, head_hash, max_seq)
        if problem is not None:
            return walk.fail(problem)
    return walk.report()


def _missing(seq: int) -> Problem:
    return Problem(seq, "missing_seq", f"record {seq} does not exist")


@dataclass(slots=True)
class _Walk:
    """The state of one pass along the chain."""

    cursor: int
    expected_prev: str
    checked: int = 0
    first: int | None = None

    def step(self, record: AuditRecord, verifier: AuditVerifier) -> Problem | None:
        if record.seq != self.cursor + 1:
            return _missing(self.cursor + 1)
        problem = check_record(record, expected_prev=self.expected_prev, verifier=verifier)
        if problem is None:
            self.first = record.seq if self.first is None else self.first
            self.checked += 1
            self.cursor = record.seq
            self.expected_prev = record.hash
        return problem

    def tail_problem(self, head_seq: int, head_hash: str, max_seq: int | None) -> Problem | None:
        reached_head = self.cursor == head_seq and (self.checked > 0 or head_seq == 0)
        if reached_head and self.expected_prev != head_hash:
            return Problem(head_seq, "head_mismatch", "the chain head names another hash")
        if max_seq is not None and max_seq > head_seq:
            detail = f"records up to {max_seq} exist beyond the chain head ({head_seq})"
            return Problem(head_seq + 1, "head_mismatch", detail)
        return None

    def report(self) -> VerifyReport:
        last = self.cursor if self.checked else None
        return VerifyReport(True, self.checked, self.first, last)

    def fail(self, problem: Problem) -> VerifyReport:
        last = self.cursor if self.checked else None
        return VerifyReport(False, self.checked, self.first, last, problem)
