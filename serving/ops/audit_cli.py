"""``enclave audit ...``: check a signed bundle offline, export one, verify the live chain.

``verify FILE`` needs nothing but the file (no server, no database, no key): it is what an
auditor runs on a bundle handed to them; ``--checkpoint FILE`` (the WORM copy of the signed
head checkpoints) also catches records cut off the end. ``export`` and ``check`` use the
configured database and signing key.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import EnclaveError
from core.settings import Settings

__all__ = ["add_audit_commands"]


def _instant(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        msg = f"{text!r} is not an ISO 8601 date or time (e.g. 2026-11-27T09:00:00Z)"
        raise argparse.ArgumentTypeError(msg) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _checkpoint(args: argparse.Namespace) -> Any:
    """The latest checkpoint in ``--checkpoint FILE``, or None."""
    from core.audit import latest_checkpoint

    return None if args.checkpoint is None else latest_checkpoint(Path(args.checkpoint))


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from core.audit import CheckpointError, verify_bundle

    path = Path(args.file)
    try:
        checkpoint = _checkpoint(args)
        report = verify_bundle(path, trusted_key_ids=args.key_id or None, checkpoint=checkpoint)
    except CheckpointError as exc:
        print(f"FAILED: checkpoint {args.checkpoint}: {exc}")
        return 1
    except OSError as exc:
        print(f"FAILED: {path} cannot be read: {exc.strerror}")
        return 1
    print(report.describe())
    return 0 if report.ok else 1


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from core.audit import AuditSigner, AuditVerifier, ExportFilter, write_bundle
    from core.db import Database, check_schema

    signer = AuditSigner.from_settings(settings)
    verifier = AuditVerifier.from_settings(settings, signer)
    filters = ExportFilter(since=args.since, until=args.until, tenant=args.tenant)

    async def run() -> Any:
        db = Database.from_settings(settings)
        try:
            async with db.reading() as connection:
                await check_schema(connection)
            return await write_bundle(
                db,
                Path(args.out),
                signer,
                verifier,
                filters,
                batch_size=settings.audit.export_batch_size,
            )
        finally:
            await db.dispose()

    summary = asyncio.run(run())
    span = "" if summary.first_seq is None else f", seq {summary.first_seq}–{summary.last_seq}"
    print(f"Wrote {summary.count} records{span} to {summary.path}; signed by key {signer.key_id}.")
    return 0


def _check(settings: Settings, args: argparse.Namespace) -> int:
    from core.audit import AuditLog, CheckpointError
    from core.db import Database, check_schema

    audit = AuditLog.from_settings(settings)
    try:
        checkpoint = _checkpoint(args)
    except (CheckpointError, OSError) as exc:
        print(f"FAILED: checkpoint {args.checkpoint}: {exc}")
        return 1

    async def run() -> Any:
        db = Database.from_settings(settings)
        try:
            async with db.reading() as connection:
                await check_schema(connection)
            return await audit.verify(
                db, start_seq=args.start_seq, end_seq=args.end_seq, checkpoint=checkpoint
            )
        finally:
            await db.dispose()

    report = asyncio.run(run())
    print(report.describe())
    return 0 if report.ok else 1


def _guarded(handler: Any) -> Any:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return int(handler(settings, args))
        except EnclaveError as exc:
            print(f"enclave: {exc.detail}")
            return 2

    return run


def add_audit_commands(commands: Any) -> None:
    """``enclave audit verify|export|check``."""
    audit = commands.add_parser("audit", help="the tamper-evident audit log").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser(
        "verify", help="check a signed audit bundle offline (exit 0: intact, 1: not)"
    )
    verify.add_argument("file", help="bundle written by `enclave audit export`")
    verify.add_argument(
        "--key-id",
        action="append",
        help="trust only this signing key id (repeatable); default: the bundle's own key",
    )
    verify.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="the latest signed head checkpoint in FILE (the WORM copy): records cut off the "
        "end after it are reported",
    )
    verify.set_defaults(handler=_guarded(_verify))

    export = audit.add_parser("export", help="write a signed bundle from the database")
    export.add_argument("--out", required=True, help="bundle file to write")
    export.add_argument("--from", dest="since", type=_instant, help="recorded at or after")
    export.add_argument("--to", dest="until", type=_instant, help="recorded before")
    export.add_argument("--tenant", help="only this tenant's records")
    export.set_defaults(handler=_guarded(_export))

    check = audit.add_parser("check", help="recompute the chain in the database")
    check.add_argument("--from-seq", dest="start_seq", type=int, help="first seq to check")
    check.add_argument("--to-seq", dest="end_seq", type=int, help="last seq to check")
    check.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="the latest signed head checkpoint in FILE (the WORM copy): records cut off the "
        "end after it are reported",
    )
    check.set_defaults(handler=_guarded(_check))
