"""The audit chain on real SQLite and PostgreSQL: appends, concurrency, tampering, exports.

Each test gets a fresh database (a new PostgreSQL database per test), migrated to head.
Tamper tests edit the tables directly with SQL, as an attacker with database access would,
and expect verification to name the exact record.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import stat
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from core.audit import (
    AuditEntry,
    AuditLog,
    AuditSigner,
    AuditUnavailable,
    AuditVerifier,
    BundleProblem,
    Checkpoint,
    CheckpointFile,
    ExportFilter,
    VerifyReport,
    csv_lines,
    jsonl_lines,
    latest_checkpoint,
    take_checkpoint,
    verify_bundle,
    write_bundle,
)
from core.db import GENESIS_HASH, Database, audit_log, conversations, messages, upgrade
from core.errors import ConfigurationError, ServiceUnavailable
from core.settings import Settings
from serving.ops.audit_cli import add_audit_commands
from tests.integration.databases import KINDS, fresh_database_url, open_database

pytestmark = pytest.mark.integration

WRITERS = 50


@pytest.fixture(params=KINDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database_url(request.param, tmp_path) as database_url:
        await asyncio.to_thread(upgrade, database_url)
        yield database_url


@pytest.fixture
async def db(url: str) -> AsyncIterator[Database]:
    database = open_database(url, pool_size=WRITERS + 2)
    yield database
    await database.dispose()


@pytest.fixture(scope="module")
def signer() -> AuditSigner:
    return AuditSigner.generate()


@pytest.fixture
def audit(signer: AuditSigner) -> AuditLog:
    return AuditLog(signer, batch_size=7)  # small batches: verification crosses pages


def chat_event(n: int, padding: int = 0) -> dict[str, object]:
    """A PII-free exchange event, as the chat route will write it."""
    return {
        "request_id": f"req_{n:06d}",
        "conversation_id": f"conv_{n:06d}",
        "model": "smollm2-135m-instruct",
        "pii": {"PERSON": 1, "EMAIL_ADDRESS": n % 3},
        "timings_ms": {"guard": 12.5, "retrieve": 3.25, "generate": 812.0},
        "sources": ["handbook:leave.md#2"],
        "note": "x" * padding,
    }


async def append_records(audit: AuditLog, db: Database, count: int, tenant: str = "t1") -> None:
    for n in range(1, count + 1):
        async with audit.transaction(db) as connection:
            await audit.append(
                connection,
                tenant=tenant,
                actor=f"u_{n % 4}",
                event_type="chat",
                event=chat_event(n),
            )


async def count_rows(db: Database, table: object) -> int:
    async with db.reading() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_append_then_verify(audit: AuditLog, db: Database) -> None:
    async with audit.transaction(db) as connection:
        first = await audit.append(
            connection, tenant="t1", actor="u_1", event_type="chat", event=chat_event(1)
        )
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert first.event == chat_event(1)
    await append_records(audit, db, 19)

    report = await audit.verify(db)
    assert report.ok, report.describe()
    assert (report.checked, report.first_seq, report.last_seq) == (20, 1, 20)
    ranged = await audit.verify(db, start_seq=8, end_seq=15)
    assert ranged.ok
    assert (ranged.checked, ranged.first_seq, ranged.last_seq) == (8, 8, 15)
    async with db.reading() as connection:
        rows = (await connection.execute(select(audit_log).order_by(audit_log.c.seq))).all()
    assert [row.seq for row in rows] == list(range(1, 21))
    assert all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, 20))
    times = [row.recorded_at for row in rows]
    assert times == sorted(times)


async def test_empty_chain_verifies(audit: AuditLog, db: Database) -> None:
    report = await audit.verify(db)
    assert report.ok
    assert report.checked == 0


async def test_exchange_rows_and_record_commit_together_or_not_at_all(
    audit: AuditLog, db: Database
) -> None:
    now = datetime.now(UTC)

    async def exchange(n: int, *, fail_after_append: bool) -> None:
        async with audit.transaction(db) as connection:
            await connection.execute(
                insert(conversations).values(
                    id=f"conv_{n}",
                    tenant="t1",
                    user_id="u_1",
                    title="<PERSON_1> leave",
                    created_at=now,
                    updated_at=now,
                )
            )
            await connection.execute(
                insert(messages).values(
                    id=f"msg_{n}",
                    conversation_id=f"conv_{n}",
                    seq=1,
                    role="user",
                    content="When does <PERSON_1> return?",
                    request_id=f"req_{n}",
                    created_at=now,
                    lineage={"engine": "vllm"},
                )
            )
            await audit.append(
                connection, tenant="t1", actor="u_1", event_type="chat", event=chat_event(n)
            )
            if fail_after_append:
                msg = "the reply could not be delivered"
                raise RuntimeError(msg)

    await exchange(1, fail_after_append=False)
    with pytest.raises(RuntimeError):
        await exchange(2, fail_after_append=True)
    assert await count_rows(db, audit_log) == 1
    assert await count_rows(db, conversations) == 1
    assert await count_rows(db, messages) == 1

    await exchange(3, fail_after_append=False)
    async with db.reading() as connection:
        seqs = (await connection.execute(select(audit_log.c.seq).order_by(audit_log.c.seq))).all()
    assert [row[0] for row in seqs] == [1, 2]
    report = await audit.verify(db)
    assert report.ok, report.describe()
    assert report.checked == 2


@pytest.mark.parametrize("with_history", [True, False], ids=["exchange", "audit-only"])
async def test_fifty_concurrent_writers_make_one_gap_free_chain(
    with_history: bool, audit: AuditLog, db: Database
) -> None:
    barrier = asyncio.Barrier(WRITERS)
    now = datetime.now(UTC)

    async def writer(n: int) -> int:
        async with audit.transaction(db) as connection:
            # Own connection, transaction begun, the log read: then all 50 contend at once.
            await connection.execute(select(func.count()).select_from(audit_log))
            await barrier.wait()
            if with_history:
                await connection.execute(
                    insert(conversations).values(
                        id=f"conv_{n:06d}",
                        tenant="t1",
                        user_id=f"u_{n}",
                        title="t",
                        created_at=now,
                        updated_at=now,
                    )
                )
            record = await audit.append(
                connection, tenant="t1", actor=f"u_{n}", event_type="chat", event=chat_event(n)
            )
            return record.seq

    seqs = await asyncio.wait_for(asyncio.gather(*(writer(n) for n in range(WRITERS))), 120)
    assert sorted(seqs) == list(range(1, WRITERS + 1))
    async with db.reading() as connection:
        rows = (
            await connection.execute(
                select(audit_log.c.seq, audit_log.c.event).order_by(audit_log.c.seq)
            )
        ).all()
    assert [row.seq for row in rows] == list(range(1, WRITERS + 1))
    conversation_ids = {json.loads(row.event)["conversation_id"] for row in rows}
    assert conversation_ids == {f"conv_{n:06d}" for n in range(WRITERS)}
    assert await count_rows(db, conversations) == (WRITERS if with_history else 0)
    report = await audit.verify(db)
    assert report.ok, report.describe()
    assert report.checked == WRITERS


TAMPERS: dict[str, list[str]] = {
    "change a field": ["UPDATE audit_log SET tenant = 'other' WHERE seq = 7"],
    "change the event": [
        "UPDATE audit_log SET event = replace(event, 'req_000007', 'req_999999') WHERE seq = 7"
    ],
    "delete a row": ["DELETE FROM audit_log WHERE seq = 7"],
    "reorder two rows": [
        "UPDATE audit_log SET seq = -1 WHERE seq = 7",
        "UPDATE audit_log SET seq = 7 WHERE seq = 8",
        "UPDATE audit_log SET seq = 8 WHERE seq = -1",
    ],
    "replace a signature": [
        "UPDATE audit_log SET signature = (SELECT signature FROM audit_log WHERE seq = 8) "
        "WHERE seq = 7"
    ],
}
EXPECTED_KIND = {
    "change a field": "hash_mismatch",
    "change the event": "hash_mismatch",
    "delete a row": "missing_seq",
    "reorder two rows": "broken_link",
    "replace a signature": "bad_signature",
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
async def test_tampering_names_the_exact_record(tamper: str, audit: AuditLog, db: Database) -> None:
    await append_records(audit, db, 12)
    assert (await audit.verify(db)).ok
    async with db.transaction() as connection:
        for statement in TAMPERS[tamper]:
            await connection.execute(text(statement))
    report = await audit.verify(db)
    assert not report.ok
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (7, EXPECTED_KIND[tamper])
    assert report.checked == 6
    assert report.last_seq == 6
    assert "seq 7" in report.describe()
    # A range that ends before the damage still verifies; one that covers it does not.
    assert (await audit.verify(db, end_seq=6)).ok
    assert not (await audit.verify(db, start_seq=5, end_seq=9)).ok


async def test_rewriting_a_record_with_its_hash_still_fails_on_the_signature(
    audit: AuditLog, db: Database
) -> None:
    await append_records(audit, db, 10)
    async with db.reading() as connection:
        row = (await connection.execute(select(audit_log).where(audit_log.c.seq == 4))).one()
    from core.audit import record_hash

    forged = record_hash(
        prev_hash=row.prev_hash,
        seq=4,
        recorded_at=row.recorded_at,
        tenant="other",
        actor=row.actor,
        event_type=row.event_type,
        event_json=row.event,
        key_id=row.key_id,
    )
    async with db.transaction() as connection:
        await connection.execute(
            text("UPDATE audit_log SET tenant = 'other', hash = :h WHERE seq = 4"), {"h": forged}
        )
    report = await audit.verify(db)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (4, "bad_signature")


async def test_deleting_the_last_records_is_caught_by_the_head(
    audit: AuditLog, db: Database
) -> None:
    await append_records(audit, db, 10)
    async with db.transaction() as connection:
        await connection.execute(text("DELETE FROM audit_log WHERE seq >= 9"))
    report = await audit.verify(db)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (9, "missing_seq")


async def test_records_from_an_unknown_key_are_named(audit: AuditLog, db: Database) -> None:
    await append_records(audit, db, 3)
    rotated = AuditLog(AuditSigner.generate())
    async with rotated.transaction(db) as connection:
        await rotated.append(connection, tenant="t1", actor="u", event_type="chat", event={})
    report = await audit.verify(db)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (4, "unknown_key")
    # After a rotation the verifier trusts the old key and the new one: all records verify.
    both = AuditLog(
        rotated.signer, AuditVerifier([audit.signer.public_key, rotated.signer.public_key])
    )
    assert (await both.verify(db)).ok
    assert not (await rotated.verify(db)).ok


async def test_unwritable_store_raises_audit_unavailable(
    audit: AuditLog, tmp_path: Path, url: str
) -> None:
    if "postgresql" in url:  # nothing listens on port 1
        db = Database.from_url("postgresql+asyncpg://postgres@127.0.0.1:1/test")
    else:  # a database file under a regular file cannot be opened
        (tmp_path / "a-file").write_text("not a folder")
        unopenable = f"sqlite+aiosqlite:///{tmp_path / 'a-file' / 'enclave.db'}"
        db = Database(create_async_engine(unopenable))
    try:
        with pytest.raises(AuditUnavailable) as caught:
            async with audit.transaction(db) as connection:
                await audit.append(connection, tenant="t1", actor="u", event_type="chat", event={})
    finally:
        await db.dispose()
    assert isinstance(caught.value, ServiceUnavailable)
    assert caught.value.status_code == 503
    assert "nothing was recorded" in caught.value.detail


@pytest.mark.parametrize("kind", KINDS)
async def test_unmigrated_store_raises_audit_unavailable(
    kind: str, audit: AuditLog, tmp_path: Path
) -> None:
    async with fresh_database_url(kind, tmp_path) as bare:
        db = Database.from_url(bare)
        try:
            with pytest.raises(AuditUnavailable):
                async with audit.transaction(db) as connection:
                    await audit.append(
                        connection, tenant="t1", actor="u", event_type="chat", event={}
                    )
        finally:
            await db.dispose()


async def test_a_stuck_writer_makes_others_fail_fast_on_postgres(
    signer: AuditSigner, tmp_path: Path
) -> None:
    async with fresh_database_url("postgresql", tmp_path) as pg:
        await asyncio.to_thread(upgrade, pg)
        db = Database.from_url(pg)
        audit = AuditLog(signer, lock_timeout_s=0.3)
        try:
            async with audit.transaction(db) as holder:
                await audit.append(holder, tenant="t1", actor="u", event_type="chat", event={})
                started = asyncio.get_running_loop().time()
                with pytest.raises(AuditUnavailable):
                    async with audit.transaction(db) as other:
                        await audit.append(
                            other, tenant="t1", actor="u", event_type="chat", event={}
                        )
                assert asyncio.get_running_loop().time() - started < 3
                timeout = (await holder.execute(text("SHOW lock_timeout"))).scalar_one()
                assert timeout == "0"  # the caller's own setting is restored
            assert (await audit.verify(db)).checked == 1
        finally:
            await db.dispose()


async def test_bad_events_are_refused_before_anything_is_written(
    audit: AuditLog, db: Database
) -> None:
    async with audit.transaction(db) as connection:
        with pytest.raises(ValueError, match="JSON number"):
            await audit.append(
                connection, tenant="t1", actor="u", event_type="chat", event={"t": float("nan")}
            )
        with pytest.raises(ValueError, match="tenant"):
            await audit.append(connection, tenant="t" * 65, actor="u", event_type="c", event={})
    assert await count_rows(db, audit_log) == 0


async def _seed(audit: AuditLog, db: Database, count: int, padding: int) -> None:
    batch = 1000
    for start in range(0, count, batch):
        entries = [
            AuditEntry(f"t{n % 3}", f"u_{n % 50}", "chat", chat_event(n, padding))
            for n in range(start, min(start + batch, count))
        ]
        async with audit.transaction(db) as connection:
            await audit.append_many(connection, entries)


async def _peak_while(consume: Callable[[], Awaitable[int]]) -> tuple[int, int]:
    tracemalloc.start()
    try:
        written = await consume()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return written, peak


async def _checked(report: Awaitable[VerifyReport]) -> int:
    result = await report
    assert result.ok, result.describe()
    return result.checked


EXPORTED = 20_000
PEAK_LIMIT = 6 * 1024 * 1024  # ~1000 records of ~1 kB in flight, several copies


async def test_exports_stream_in_bounded_memory(
    audit: AuditLog, db: Database, tmp_path: Path
) -> None:
    await _seed(audit, db, EXPORTED, padding=400)
    out = tmp_path / "export"

    async def write(lines: Callable[[], AsyncIterator[str]]) -> int:
        count = 0
        with out.open("w", encoding="utf-8") as handle:
            async for line in lines():
                handle.write(line)
                count += 1
        return count

    # A tenth of the records first: the peak must not grow with the number exported.
    small = ExportFilter(up_to_seq=EXPORTED // 10)
    _, small_peak = await _peak_while(lambda: write(lambda: jsonl_lines(db, small)))
    jsonl_count, jsonl_peak = await _peak_while(
        lambda: write(lambda: jsonl_lines(db, batch_size=1000))
    )
    jsonl_size = out.stat().st_size
    first = json.loads(out.open(encoding="utf-8").readline())
    assert first["seq"] == 1
    assert first["event"]["request_id"] == "req_000000"
    csv_count, csv_peak = await _peak_while(lambda: write(lambda: csv_lines(db, batch_size=1000)))
    chain_report, verify_chain_peak = await _peak_while(
        lambda: _checked(AuditLog(audit.signer, batch_size=1000).verify(db))
    )
    print(
        f"\n{db.engine.dialect.name}: {EXPORTED} records, JSONL {jsonl_size / 1e6:.1f} MB; "
        f"tracemalloc peaks: JSONL {jsonl_peak / 1e6:.2f} MB "
        f"({EXPORTED // 10} records: {small_peak / 1e6:.2f} MB), CSV {csv_peak / 1e6:.2f} MB, "
        f"chain verify {verify_chain_peak / 1e6:.2f} MB"
    )
    assert jsonl_count == EXPORTED
    assert csv_count == EXPORTED + 1
    assert chain_report == EXPORTED
    assert jsonl_size > 3 * PEAK_LIMIT  # the output is far larger than what was held
    assert jsonl_peak < small_peak * 1.5  # ten times the records, about the same memory
    assert jsonl_peak < PEAK_LIMIT
    assert csv_peak < PEAK_LIMIT
    assert verify_chain_peak < PEAK_LIMIT

    bundle = tmp_path / "audit.bundle.jsonl"

    async def bundle_it() -> int:
        summary = await write_bundle(db, bundle, audit.signer, audit.verifier)
        return summary.count

    bundled, bundle_peak = await _peak_while(bundle_it)
    tracemalloc.start()
    try:
        report = verify_bundle(bundle)
        _, verify_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"bundle: write peak {bundle_peak / 1e6:.2f} MB, verify peak {verify_peak / 1e6:.2f} MB")
    assert bundled == EXPORTED
    assert report.ok, report.describe()
    assert (report.count, report.first_seq, report.last_seq) == (EXPORTED, 1, EXPORTED)
    assert bundle_peak < PEAK_LIMIT
    assert verify_peak < PEAK_LIMIT


async def _bundle(audit: AuditLog, db: Database, path: Path, **filters: object) -> Path:
    await write_bundle(db, path, audit.signer, audit.verifier, ExportFilter(**filters))  # type: ignore[arg-type]
    return path


def _edit_line(path: Path, line: int, edit: Callable[[str], str]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line - 1] = edit(lines[line - 1])
    path.write_text("".join(lines), encoding="utf-8")


def _broken(good: Path, copy: Path, line: int, edit: Callable[[str], str]) -> BundleProblem:
    copy.write_bytes(good.read_bytes())
    _edit_line(copy, line, edit)
    result = verify_bundle(copy)
    assert not result.ok
    assert result.problem is not None
    return result.problem


async def test_bundle_verifies_offline_and_names_what_was_modified(
    audit: AuditLog, db: Database, tmp_path: Path
) -> None:
    await append_records(audit, db, 12)
    good = await _bundle(audit, db, tmp_path / "good.jsonl")
    report = verify_bundle(good)
    assert report.ok, report.describe()
    assert (report.count, report.key_id) == (12, audit.signer.key_id)
    assert report.key_ids == [audit.signer.key_id]
    assert verify_bundle(good, trusted_key_ids=[audit.signer.key_id]).ok
    copy = tmp_path / "copy.jsonl"

    # One byte of record 5 (its actor u_1 -> u_2).
    problem = _broken(good, copy, 5, lambda s: s.replace('"actor":"u_1"', '"actor":"u_2"'))
    assert (problem.where, problem.seq, problem.line, problem.kind) == (
        "record",
        5,
        5,
        "hash_mismatch",
    )
    # A byte that breaks the JSON of record 3.
    problem = _broken(good, copy, 3, lambda s: s.replace("{", "[", 1))
    assert (problem.where, problem.line, problem.kind) == ("record", 3, "malformed")
    # A record removed: the gap is named.
    problem = _broken(good, copy, 6, lambda s: "")
    assert (problem.where, problem.seq, problem.kind) == ("record", 6, "missing_seq")
    # A signature swapped between two records.
    signature_of_8 = json.loads(good.read_text().splitlines()[7])["signature"]
    problem = _broken(
        good,
        copy,
        7,
        lambda s: json.dumps({**json.loads(s), "signature": signature_of_8}) + "\n",
    )
    assert (problem.where, problem.seq, problem.kind) == ("record", 7, "bad_signature")
    # The manifest: its count changed, or one byte of its signature.
    problem = _broken(good, copy, 13, lambda s: s.replace('"count":12', '"count":11'))
    assert (problem.where, problem.line, problem.kind) == ("manifest", 13, "bad_signature")
    problem = _broken(good, copy, 13, lambda s: s.replace('"signature":"', '"signature":"A', 1))
    assert problem.where == "manifest"
    # Signed by a key the reader does not trust.
    other = verify_bundle(good, trusted_key_ids=["0123456789abcdef"])
    assert other.problem is not None
    assert other.problem.where == "manifest"
    assert "not one of the trusted keys" in other.describe()


def _without(good: Path, copy: Path, *lines: int) -> BundleProblem:
    kept = [
        line
        for number, line in enumerate(good.read_text(encoding="utf-8").splitlines(True), 1)
        if number not in lines
    ]
    copy.write_text("".join(kept), encoding="utf-8")
    result = verify_bundle(copy)
    assert not result.ok
    assert result.problem is not None
    assert result.problem.kind == "missing_seq"
    return result.problem


async def test_a_deleted_record_is_named_by_seq_and_its_neighbours(
    audit: AuditLog, db: Database, tmp_path: Path
) -> None:
    for n in range(25):
        async with audit.transaction(db) as connection:
            await audit.append(
                connection, tenant=f"t{n % 2}", actor="u", event_type="chat", event=chat_event(n)
            )
    copy = tmp_path / "copy.jsonl"
    whole = await _bundle(audit, db, tmp_path / "all.jsonl")
    # Unfiltered: the middle, the last and the first record (the last two passed as a count
    # mismatch, "count says 25, the records give 24", naming nothing).
    problem = _without(whole, copy, 13)
    assert problem.seq == 13
    assert "seq 12 (line 12) to seq 14 (line 13)" in problem.detail
    problem = _without(whole, copy, 25)
    assert problem.seq == 25
    assert "seq 25 after seq 24 (line 24), the last record left" in problem.detail
    problem = _without(whole, copy, 1)
    assert problem.seq == 1
    assert "seq 1 before seq 2 (line 1), the first record left" in problem.detail
    # One tenant's bundle (seq 2, 4, …, 24): its records are not consecutive, so the gap
    # is found against the seq numbers the signed manifest lists.
    tenant = await _bundle(audit, db, tmp_path / "t1.jsonl", tenant="t1")
    problem = _without(tenant, copy, 6)
    assert problem.seq == 12
    assert "1 record(s) missing: seq 12 between seq 10 (line 5) and seq 14 (line 6)" in (
        problem.detail
    )
    problem = _without(tenant, copy, 11, 12)
    assert problem.seq == 22
    assert "2 record(s) missing" in problem.detail
    assert "seq 22 after seq 20 (line 10)" in problem.detail
    assert "seq 24" in problem.detail


async def test_a_resigned_forgery_is_caught_by_pinning_the_key(
    audit: AuditLog, db: Database, tmp_path: Path
) -> None:
    await append_records(audit, db, 3)
    forger = AuditLog(AuditSigner.generate(), AuditVerifier([audit.signer.public_key]))
    forged = await _bundle(forger, db, tmp_path / "forged.jsonl")
    # Self-consistent, but written by another key holder: pinning the key id catches it.
    assert verify_bundle(forged).ok
    report = verify_bundle(forged, trusted_key_ids=[audit.signer.key_id])
    assert report.problem is not None
    assert report.problem.kind == "unknown_key"


async def test_filtered_bundles_verify(audit: AuditLog, db: Database, tmp_path: Path) -> None:
    for n in range(12):
        async with audit.transaction(db) as connection:
            await audit.append(
                connection, tenant=f"t{n % 2}", actor="u", event_type="chat", event=chat_event(n)
            )
    report = verify_bundle(await _bundle(audit, db, tmp_path / "t1.jsonl", tenant="t1"))
    assert report.ok, report.describe()
    assert (report.count, report.first_seq) == (6, 2)
    future = datetime.now(UTC) + timedelta(days=1)
    empty = verify_bundle(await _bundle(audit, db, tmp_path / "none.jsonl", since=future))
    assert empty.ok
    assert empty.count == 0
    ranged = verify_bundle(await _bundle(audit, db, tmp_path / "r.jsonl", after_seq=4, up_to_seq=9))
    assert ranged.ok
    assert (ranged.first_seq, ranged.last_seq) == (5, 9)


def _cli(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="enclave")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.handler(settings, args))


async def test_cli_exports_and_verifies_a_bundle(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        paths={"data_dir": tmp_path / "data"},  # type: ignore[arg-type]
        database={"url": url},  # type: ignore[arg-type]
    )
    audit = AuditLog.from_settings(settings)
    db = Database.from_url(url)
    try:
        for n in range(5):
            async with audit.transaction(db) as connection:
                await audit.append(
                    connection, tenant=f"t{n % 2}", actor="u", event_type="chat", event={"n": n}
                )
    finally:
        await db.dispose()
    out = tmp_path / "bundle.jsonl"
    export = ("audit", "export", "--out", str(out), "--tenant", "t0")
    assert await asyncio.to_thread(_cli, settings, *export) == 0
    assert "Wrote 3 records" in capsys.readouterr().out
    assert await asyncio.to_thread(_cli, settings, "audit", "verify", str(out)) == 0
    expected = f"OK: 3 records, seq 1–5; manifest signed by key {audit.signer.key_id}"
    assert expected in capsys.readouterr().out
    assert await asyncio.to_thread(_cli, settings, "audit", "check") == 0
    assert "OK: 5 records" in capsys.readouterr().out

    _edit_line(out, 2, lambda s: s.replace('"n":2', '"n":7'))
    assert await asyncio.to_thread(_cli, settings, "audit", "verify", str(out)) == 1
    assert "FAILED: record (seq 3, line 2): hash mismatch" in capsys.readouterr().out
    missing = str(tmp_path / "nope")
    assert await asyncio.to_thread(_cli, settings, "audit", "verify", missing) == 1


def test_signing_key_is_created_once_with_mode_600(tmp_path: Path) -> None:
    settings = Settings(paths={"data_dir": tmp_path})  # type: ignore[arg-type]
    first = AuditSigner.from_settings(settings)
    key_file = tmp_path / "secrets" / "audit-signing-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = AuditSigner.from_settings(settings)
    assert again.key_id == first.key_id
    assert len(first.key_id) == 16
    assert [p.name for p in key_file.parent.iterdir()] == ["audit-signing-key"]


def test_signing_key_files_raw_and_broken(tmp_path: Path) -> None:
    raw = tmp_path / "raw.key"
    raw.write_bytes(os.urandom(32))
    audit_settings = {"signing_key_file": raw, "generate_signing_key": False}
    settings = Settings(audit=audit_settings)  # type: ignore[arg-type]
    signer = AuditSigner.from_settings(settings)
    verifier = AuditVerifier.from_settings(settings, signer)
    assert verifier.verify(signer.key_id, signer.sign(b"m"), b"m")
    assert not verifier.verify(signer.key_id, signer.sign(b"m"), b"n")

    (tmp_path / "bad.key").write_bytes(b"not a key")
    with pytest.raises(ConfigurationError, match="neither a PEM"):
        AuditSigner.from_file(tmp_path / "bad.key")
    with pytest.raises(ConfigurationError, match="does not exist"):
        AuditSigner.from_file(tmp_path / "missing.key")
    with pytest.raises(ConfigurationError, match="trusted_public_keys"):
        AuditVerifier.from_settings(
            Settings(audit={"trusted_public_keys": ["!!"]}),  # type: ignore[arg-type]
            signer,
        )
    old = AuditSigner.generate()
    rotated = AuditVerifier.from_settings(
        Settings(audit={"trusted_public_keys": [old.public_key_b64]}),  # type: ignore[arg-type]
        signer,
    )
    assert rotated.key_ids == sorted([signer.key_id, old.key_id])
    assert base64.b64decode(old.public_key_b64) == old.public_key


async def _cut_tail(db: Database, keep: int) -> None:
    """What an attacker with database access does: delete the newest rows, rewind the head."""
    async with db.transaction() as connection:
        kept_hash = (
            await connection.execute(text(f"SELECT hash FROM audit_log WHERE seq = {keep}"))
        ).scalar_one()
        await connection.execute(text(f"DELETE FROM audit_log WHERE seq > {keep}"))
        await connection.execute(
            text("UPDATE audit_chain_head SET last_seq = :seq, last_hash = :hash WHERE id = 1"),
            {"seq": keep, "hash": kept_hash},
        )


async def test_a_cut_off_tail_is_invisible_to_the_chain_but_not_to_a_checkpoint(
    audit: AuditLog, db: Database, tmp_path: Path
) -> None:
    await append_records(audit, db, 10)
    worm = CheckpointFile(tmp_path / "worm" / "checkpoints.jsonl")
    worm.write(await take_checkpoint(db, audit.signer))
    checkpoint = latest_checkpoint(worm.path)
    assert (checkpoint.seq, checkpoint.key_id) == (10, audit.signer.key_id)
    assert (await audit.verify(db, checkpoint=checkpoint)).ok

    await _cut_tail(db, keep=7)
    alone = await audit.verify(db)
    assert alone.ok, "the known weakness: without the checkpoint, nothing shows"
    report = await audit.verify(db, checkpoint=checkpoint)
    assert not report.ok
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (8, "truncated")
    assert "records end at seq 7: seq 8–10 were removed" in report.problem.detail

    # The same offline: a bundle exported after the cut verifies alone, not against the WORM copy.
    bundle = await _bundle(audit, db, tmp_path / "after-cut.jsonl")
    assert verify_bundle(bundle).ok
    offline = verify_bundle(bundle, checkpoint=checkpoint)
    assert offline.problem is not None
    assert (offline.problem.seq, offline.problem.kind) == (8, "truncated")


async def test_a_forged_or_rewritten_checkpoint_is_refused(audit: AuditLog, db: Database) -> None:
    await append_records(audit, db, 4)
    real = await take_checkpoint(db, audit.signer)
    forged = Checkpoint(3, real.head_hash, real.at, real.key_id, real.signature)
    report = await audit.verify(db, checkpoint=forged)
    assert report.problem is not None
    assert report.problem.kind == "bad_checkpoint"
    # Signed by another key: not one the deployment trusts.
    stranger = await take_checkpoint(db, AuditSigner.generate())
    assert (await audit.verify(db, checkpoint=stranger)).problem is not None


async def test_cli_verifies_a_bundle_against_the_checkpoint_file(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        paths={"data_dir": tmp_path / "data"},  # type: ignore[arg-type]
        database={"url": url},  # type: ignore[arg-type]
    )
    audit = AuditLog.from_settings(settings)
    db = Database.from_url(url)
    worm = tmp_path / "checkpoints.jsonl"
    try:
        await append_records(audit, db, 6)
        CheckpointFile(worm).write(await take_checkpoint(db, audit.signer))
        await _cut_tail(db, keep=5)
    finally:
        await db.dispose()
    out = tmp_path / "bundle.jsonl"
    assert await asyncio.to_thread(_cli, settings, "audit", "export", "--out", str(out)) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(_cli, settings, "audit", "verify", str(out)) == 0
    check = ("audit", "verify", str(out), "--checkpoint", str(worm))
    assert await asyncio.to_thread(_cli, settings, *check) == 1
    assert "truncated" in capsys.readouterr().out
    live = ("audit", "check", "--checkpoint", str(worm))
    assert await asyncio.to_thread(_cli, settings, *live) == 1
    assert "seq 6 was removed" in capsys.readouterr().out
