"""Data lifecycle: retention of conversations, and erasure of one person's data.

Both delete rows and append an audit event naming what went (counts and ids, never content)
in the same transaction; audit records themselves are never deleted, so the chain still
verifies and the older records stay as PII-free tombstones (``core.audit.chain``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from api.security import Principal
from api.services import Services
from core.db import conversations, messages, quality_events, user_profiles
from core.errors import EnclaveError

__all__ = ["RetentionJob", "erase_subject"]

_log = logging.getLogger("enclave.lifecycle")


class RetentionJob:
    """Deletes conversations untouched for ``retention.history_days``, on a schedule."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._task: asyncio.Task[None] | None = None

    async def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """One pass; returns what was deleted."""
        days = self._services.settings.retention.history_days
        if days is None:
            return {"conversations": 0, "messages": 0}
        cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
        audit = self._services.audit
        async with audit.transaction(self._services.database) as connection:
            ids = [
                row.id
                for row in await connection.execute(
                    select(conversations.c.id).where(conversations.c.updated_at < cutoff)
                )
            ]
            if not ids:
                return {"conversations": 0, "messages": 0}
            count = (
                await connection.execute(
                    select(func.count()).where(messages.c.conversation_id.in_(ids))
                )
            ).scalar_one()
            await connection.execute(messages.delete().where(messages.c.conversation_id.in_(ids)))
            await connection.execute(conversations.delete().where(conversations.c.id.in_(ids)))
            await audit.append(
                connection,
                tenant="-",
                actor="system:retention",
                event_type="retention",
                event={
                    "data_class": "history",
                    "older_than": cutoff.isoformat(),
                    "conversations": len(ids),
                    "messages": int(count),
                },
            )
        _log.info("retention pass", extra={"conversations": len(ids), "messages": int(count)})
        return {"conversations": len(ids), "messages": int(count)}

    def start(self) -> None:
        """Run a pass now and then every ``retention.check_interval_s``."""
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Cancel the schedule."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        interval = self._services.settings.retention.check_interval_s
        while True:
            try:
                await self.run_once()
            except EnclaveError as exc:  # the store is down: try again next time
                _log.warning("retention pass failed", extra={"error_type": type(exc).__name__})
            await asyncio.sleep(interval)


async def erase_subject(
    services: Services, admin: Principal, tenant: str, subject: str
) -> dict[str, Any]:
    """Erase a person: their conversations, the documents they uploaded (with their
    vectors) and their usage counters; an ``erasure`` audit record says what went."""
    removed_documents: list[dict[str, str]] = []
    knowledge = services.knowledge
    if knowledge is not None:
        for base in await knowledge.list_bases(tenant):
            for document in await knowledge.list_documents(tenant, base.name):
                if document.uploaded_by == subject:
                    await knowledge.delete_document(tenant, base.name, document.doc_id)
                    removed_documents.append(
                        {"knowledge_base": base.name, "doc_id": document.doc_id}
                    )
    usage_counters = await services.security.quotas.forget_user(subject)
    audit = services.audit
    async with audit.transaction(services.database) as connection:
        removed = await services.history.erase_user(connection, tenant, subject)
        # The profile holds a display name; quality events hold (scrubbed) comments.
        profile = await connection.execute(
            delete(user_profiles).where(
                user_profiles.c.tenant == tenant, user_profiles.c.user_id == subject
            )
        )
        signals = await connection.execute(
            delete(quality_events).where(
                quality_events.c.tenant == tenant, quality_events.c.user_id == subject
            )
        )
        record = await audit.append(
            connection,
            tenant=tenant,
            actor=admin.subject,
            event_type="erasure",
            event={
                "subject": subject,
                "conversations": removed,
                "documents": removed_documents,
                "usage_counters": usage_counters,
                "profile": bool(profile.rowcount),
                "quality_events": signals.rowcount,
                "auth_method": admin.auth_method,
            },
        )
    return {
        "subject": subject,
        "tenant": tenant,
        "conversations": removed,
        "documents": removed_documents,
        "usage_counters": usage_counters,
        "profile": bool(profile.rowcount),
        "quality_events": signals.rowcount,
        "audit_seq": record.seq,
    }
