"""What the API writes to the audit log, and how: events are PII-free by construction
(pseudonymous ids, placeholders, counts, lineage), never message text.

Exchanges are recorded with their conversation rows in one transaction (``api/routes/
chat.py``); admin actions and auth failures each get a transaction of their own here.
"""

from __future__ import annotations

import logging
from typing import Any

from api.security import Principal
from core.audit import AuditLog, AuditUnavailable
from core.db import Database

__all__ = ["AuditTrail"]

_log = logging.getLogger("enclave.audit")


class AuditTrail:
    """Records admin actions, data-lifecycle events and refused credentials."""

    def __init__(self, db: Database, log: AuditLog) -> None:
        self._db = db
        self._log = log

    async def action(self, principal: Principal, event_type: str, **details: Any) -> int:
        """Record an action the caller took; raises ``AuditUnavailable`` (503) if the audit
        log cannot be written, so an unrecorded admin action is reported as failed."""
        event = {"auth_method": principal.auth_method, "key_id": principal.key_id, **details}
        async with self._log.transaction(self._db) as connection:
            record = await self._log.append(
                connection,
                tenant=principal.tenant,
                actor=principal.subject,
                event_type=event_type,
                event=event,
            )
        return record.seq

    async def refused_credentials(self, *, route: str, method: str, reason: str) -> None:
        """Record a refused credential (best effort: the caller is refused either way)."""
        try:
            async with self._log.transaction(self._db) as connection:
                await self._log.append(
                    connection,
                    tenant="-",
                    actor="anonymous",
                    event_type="auth.failed",
                    event={"route": route, "method": method, "reason": reason},
                )
        except AuditUnavailable:
            _log.warning("auth failure not recorded: audit log unavailable")
