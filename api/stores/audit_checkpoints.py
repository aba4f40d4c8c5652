"""The API process's checkpoint job: the chain's signed head, at an interval and on shutdown.

What a checkpoint proves and how to ship it off the box: ``core.audit.checkpoint`` and
docs/operations.md. Each sink is written independently: a full disk does not keep the
checkpoint out of the log stream, and neither stops the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from core.audit import AuditLog, Checkpoint, CheckpointSink, take_checkpoint
from core.db import Database

__all__ = ["CheckpointJob"]

_log = logging.getLogger("enclave.audit.checkpoint")


class CheckpointJob:
    """Signs the chain's head every ``interval_s`` and once more on shutdown."""

    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        sinks: Sequence[CheckpointSink],
        *,
        interval_s: float | None,
    ) -> None:
        """``interval_s`` None: the job does nothing."""
        self._database = database
        self._audit = audit
        self._sinks = tuple(sinks)
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> Checkpoint:
        """Take one checkpoint and hand it to every sink."""
        checkpoint = await take_checkpoint(self._database, self._audit.signer)
        for sink in self._sinks:
            try:
                # Off the event loop: a file fsync or a webhook post (with its retry) blocks.
                await asyncio.to_thread(sink.write, checkpoint)
            except OSError as exc:
                # Reported, not raised: the other sinks still get it, and the next interval
                # tries again. The alert rule on this log line is the operator's signal.
                _log.error(
                    "audit checkpoint not written",
                    extra={"sink": type(sink).__name__, "error_type": type(exc).__name__},
                )
        return checkpoint

    async def _loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.run_once()
            except Exception as exc:  # the database may be down for a while: keep trying
                _log.warning("audit checkpoint skipped", extra={"error_type": type(exc).__name__})

    async def start(self) -> None:
        """Start the interval loop (on application start-up)."""
        if self._interval_s is not None and self._task is None:
            self._task = asyncio.create_task(self._loop(self._interval_s))

    async def stop(self) -> None:
        """Stop the loop and write the last checkpoint (on shutdown)."""
        if self._interval_s is None:
            return
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.run_once()
        except Exception as exc:  # shutting down: say so, do not block the exit
            _log.warning(
                "audit checkpoint on shutdown failed", extra={"error_type": type(exc).__name__}
            )
