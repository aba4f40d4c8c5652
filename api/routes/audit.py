"""``/v1/audit``: the auditor's read-only view of the tamper-evident log.

Auditors read their own tenant's records; verification covers the whole chain (it reveals
only counts and the first broken sequence number). Exports stream in bounded memory.
Every read an auditor makes is itself recorded (``audit.read``, ``audit.verified``,
``audit.followed``, ``audit.exported``, ``audit.bundle_exported``): who watched the log is
part of the log. A read whose record cannot be written fails with 503, as admin actions do.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get
from litestar.background_tasks import BackgroundTask
from litestar.params import Parameter
from litestar.response import File, Stream

from api.security import Forbidden, Principal
from api.services import Services
from api.sse import encode_frame
from api.stores.audit_trail import AuditTrail
from core.audit import (
    Checkpoint,
    CheckpointError,
    ExportFilter,
    csv_lines,
    iter_records,
    jsonl_lines,
    latest_checkpoint,
    write_bundle,
)
from core.audit.records import AuditRecord
from core.errors import InvalidRequest

__all__ = ["AuditController"]

_MAX_PAGE = 500
_POLL_S = 1.0
# Sequence numbers are positive and stay exact in JSON (canonical JSON allows 2**53 - 1).
Seq = Annotated[int, Parameter(ge=0, le=2**53 - 1)]


def _filters(
    principal: Principal,
    *,
    since: datetime | None,
    until: datetime | None,
    tenant: str | None,
    actor: str | None,
    event_type: str | None,
    after_seq: int | None,
) -> ExportFilter:
    if tenant is not None and tenant != principal.tenant:
        msg = f"Auditors read their own tenant's records ({principal.tenant!r})."
        raise Forbidden(msg)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            msg = f"{name}: include a time zone, e.g. 2026-11-27T00:00:00Z."
            raise InvalidRequest(msg)
    return ExportFilter(
        since=since,
        until=until,
        tenant=principal.tenant,
        actor=actor,
        event_type=event_type,
        after_seq=after_seq,
    )


def _matches(record: AuditRecord, model: str | None, decision: str | None) -> bool:
    if model is None and decision is None:
        return True
    lineage = json.loads(record.event_json).get("lineage") or {}
    return (model is None or lineage.get("model") == model) and (
        decision is None or lineage.get("decision") == decision
    )


class AuditController(Controller):
    """Query, export, verify and follow the audit log (role ``auditor``)."""

    path = "/v1/audit"
    tags = ["audit"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/records", summary="Query audit records (cursor pagination by sequence number)")
    async def records(  # noqa: PLR0917 - one parameter per query filter
        self,
        principal: Principal,
        services: Services,
        audit_trail: AuditTrail,
        since: datetime | None = None,
        until: datetime | None = None,
        tenant: str | None = None,
        actor: str | None = None,
        event_type: str | None = None,
        model: str | None = None,
        decision: str | None = None,
        after_seq: Seq | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Records in sequence order; pass ``next_cursor`` back as ``after_seq``."""
        if not 1 <= limit <= _MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {_MAX_PAGE}, got {limit}.")
        filters = _filters(
            principal,
            since=since,
            until=until,
            tenant=tenant,
            actor=actor,
            event_type=event_type,
            after_seq=after_seq,
        )
        page: list[dict[str, Any]] = []
        last_seen: int | None = None
        async for record in iter_records(services.database, filters, batch_size=limit):
            last_seen = record.seq
            if _matches(record, model, decision):
                page.append(record.as_dict())
                if len(page) == limit:
                    break
        more = len(page) == limit
        await audit_trail.action(
            principal,
            "audit.read",
            filters=filters.as_dict(),
            model=model,
            decision=decision,
            returned=len(page),
            seqs=[page[0]["seq"], page[-1]["seq"]] if page else None,
        )
        return {"data": page, "next_cursor": last_seen if more else None}

    @get("/export", summary="Export audit records as JSONL or CSV (streamed)")
    async def export(  # noqa: PLR0917 - one parameter per query filter
        self,
        principal: Principal,
        services: Services,
        audit_trail: AuditTrail,
        format: Literal["jsonl", "csv"] = "jsonl",
        since: datetime | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        event_type: str | None = None,
        after_seq: Seq | None = None,
    ) -> Stream:
        """Every matching record, read and sent in batches (bounded memory)."""
        filters = _filters(
            principal,
            since=since,
            until=until,
            tenant=None,
            actor=actor,
            event_type=event_type,
            after_seq=after_seq,
        )
        await audit_trail.action(
            principal, "audit.exported", format=format, filters=filters.as_dict()
        )
        lines = jsonl_lines if format == "jsonl" else csv_lines
        media = "application/x-ndjson" if format == "jsonl" else "text/csv"
        return Stream(
            lines(services.database, filters),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="audit.{format}"'},
        )

    @get("/verify", summary="Recompute the chain and signatures; name the first broken record")
    async def verify(  # noqa: PLR0917 - Litestar injects by name
        self,
        principal: Principal,
        services: Services,
        audit_trail: AuditTrail,
        start_seq: Seq | None = None,
        end_seq: Seq | None = None,
        checkpoint: str | None = None,
    ) -> dict[str, Any]:
        """``ok``, how many records were checked, and the first problem if any.

        ``checkpoint``: a signed head checkpoint line (from the WORM copy); without it, the
        latest in this process's checkpoint file, if any. A chain whose tail was cut off
        after that checkpoint is reported as ``truncated``.
        """
        anchor, source = _checkpoint(services, checkpoint)
        report = await services.audit.verify(
            services.database, start_seq=start_seq, end_seq=end_seq, checkpoint=anchor
        )
        await audit_trail.action(
            principal,
            "audit.verified",
            start_seq=start_seq,
            end_seq=end_seq,
            checkpoint_seq=None if anchor is None else anchor.seq,
            ok=report.ok,
            checked=report.checked,
            problem_seq=None if report.problem is None else report.problem.seq,
        )
        problem = None
        if report.problem is not None:
            problem = {
                "seq": report.problem.seq,
                "kind": report.problem.kind,
                "detail": report.problem.describe(),
            }
        return {
            "ok": report.ok,
            "checked": report.checked,
            "first_seq": report.first_seq,
            "last_seq": report.last_seq,
            "problem": problem,
            "summary": report.describe(),
            "checkpoint": None
            if anchor is None
            else {"seq": anchor.seq, "at": anchor.at, "source": source},
        }

    @get(
        "/bundle",
        summary="A signed export bundle that `enclave audit verify` checks offline",
        media_type="application/x-ndjson",
    )
    async def bundle(  # noqa: PLR0917 - one parameter per query filter
        self,
        principal: Principal,
        services: Services,
        audit_trail: AuditTrail,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: Seq | None = None,
    ) -> File:
        """Records plus a signed manifest (key id and public key), as one JSONL file."""
        filters = _filters(
            principal,
            since=since,
            until=until,
            tenant=None,
            actor=None,
            event_type=None,
            after_seq=after_seq,
        )
        folder = Path(tempfile.mkdtemp(prefix="enclave-bundle-"))
        path = folder / "audit-bundle.jsonl"
        audit = services.audit
        summary = await write_bundle(services.database, path, audit.signer, audit.verifier, filters)
        await audit_trail.action(
            principal, "audit.bundle_exported", records=summary.count, key_id=summary.key_id
        )
        return File(
            path=path,
            filename="audit-bundle.jsonl",
            media_type="application/x-ndjson",
            background=BackgroundTask(_remove, folder),
        )

    @get("/events", summary="Follow new audit records live (server-sent events)")
    async def events(  # noqa: PLR0917 - Litestar injects by name
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        services: Services,
        audit_trail: AuditTrail,
        after_seq: Seq | None = None,
        idle_timeout_s: float = 300.0,
    ) -> Stream:
        """Each record as an SSE event whose id is its sequence number; reconnect with
        ``Last-Event-ID`` (or ``after_seq``) to resume without gaps. The stream ends after
        ``idle_timeout_s`` without new records (clients reconnect and resume)."""
        if not 0 <= idle_timeout_s <= 3600:
            raise InvalidRequest("idle_timeout_s must be between 0 and 3600.")
        resume = request.headers.get("last-event-id")
        cursor = int(resume) if resume and resume.isdigit() else (after_seq or 0)
        filters_base = _filters(
            principal,
            since=None,
            until=None,
            tenant=None,
            actor=None,
            event_type=None,
            after_seq=None,
        )
        await audit_trail.action(principal, "audit.followed", after_seq=cursor)

        async def follow() -> AsyncIterator[bytes]:
            nonlocal cursor
            yield b": following the audit log\n\n"
            idle = 0.0
            while True:
                filters = ExportFilter(tenant=filters_base.tenant, after_seq=cursor)
                sent = False
                async for record in iter_records(services.database, filters):
                    cursor = record.seq
                    sent = True
                    yield f"id: {record.seq}\n".encode() + encode_frame(
                        record.as_dict(), event="audit"
                    )
                idle = 0.0 if sent else idle + _POLL_S
                if idle > idle_timeout_s:
                    return
                if not sent:
                    yield b": keep-alive\n\n"
                    await asyncio.sleep(_POLL_S)

        return Stream(
            follow(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def _checkpoint(services: Services, given: str | None) -> tuple[Checkpoint | None, str | None]:
    """The checkpoint to verify against: the one given, else this process's latest."""
    if given is not None:
        try:
            return Checkpoint.parse(given), "given"
        except CheckpointError as exc:
            msg = f"checkpoint: {exc}; pass one line of the checkpoint file as it is."
            raise InvalidRequest(msg) from exc
    settings = services.settings
    path = settings.audit.checkpoint_path(settings.paths.data_dir)
    if not path.is_file():
        return None, None
    try:
        return latest_checkpoint(path), "local-file"
    except CheckpointError:
        # An unreadable local file is no reason to refuse verification; the chain alone is.
        return None, None


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
