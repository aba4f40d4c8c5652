"""Implicit quality signals the server sees itself: an abandoned answer, a rephrase."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import ClassVar

from api.chat.pipeline import ChatRun
from api.security import Principal
from api.stores.history import LastTurn
from api.stores.quality import QualityStore, is_rephrase
from core.metrics import EnclaveMetrics

__all__ = ["QualitySignals"]

_log = logging.getLogger("enclave.api.chat")


class QualitySignals:
    """Records one answer's implicit signals, best effort and off the answer's path: a
    failure is logged, never shown."""

    _pending: ClassVar[set[asyncio.Task[None]]] = set()

    def __init__(
        self, store: QualityStore, metrics: EnclaveMetrics, principal: Principal, run: ChatRun
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._principal = principal
        self._run = run

    def abandoned(self) -> None:
        """The client left before the answer was complete."""
        if self._run.fit is None:
            return  # a canned reply costs nothing and says nothing about the answer
        plan = self._run.plan
        self._spawn("abandoned", self._run.request_id, plan.prompt.version, plan.config_version)

    def rephrase_of(self, previous: LastTurn) -> None:
        """Record a rephrase when this turn says again what the previous one asked."""
        if previous.request_id is None:
            return
        user = next((m.content for m in reversed(self._run.guard.messages) if m.role == "user"), "")
        waited = (datetime.now(UTC) - previous.answered_at).total_seconds()
        if is_rephrase(previous.user_text, user, waited):
            lineage = previous.lineage
            self._spawn(
                "rephrase",
                previous.request_id,
                lineage.get("prompt_version"),
                lineage.get("config_version"),
            )

    def _spawn(
        self, kind: str, request_id: str, prompt_version: str | None, config_version: str | None
    ) -> None:
        task = asyncio.get_running_loop().create_task(
            self._record(kind, request_id, prompt_version, config_version)
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _record(
        self, kind: str, request_id: str, prompt_version: str | None, config_version: str | None
    ) -> None:
        try:
            await self._store.record(
                tenant=self._principal.tenant,
                user_id=self._principal.subject,
                request_id=request_id,
                kind=kind,
                conversation_id=None,
                prompt_version=prompt_version,
                config_version=config_version,
                model=self._run.model,
            )
            self._metrics.quality_event(kind, prompt_version)
        except Exception as exc:
            _log.warning(
                "quality signal not recorded",
                extra={"kind": kind, "error_type": type(exc).__name__},
            )
