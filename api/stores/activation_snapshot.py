"""One mechanism for "what is active now": an in-memory snapshot, re-checked every ``refresh_s``.

Prompt versions and runtime configuration are both activated by appending rows; every API
replica keeps a snapshot of what is active so that a request costs no query. Once the
snapshot is older than ``refresh_s`` the store's ``refresh`` runs: one cheap query for the
newest activation id, and a reload only when it moved. A replica that made a change itself
calls :meth:`ActivationSnapshot.invalidate` and sees it on its next read.

Two things this class guards that a hand-written copy easily gets wrong:

* **A change during a reload.** If this replica activates something while a refresh is
  under way, that refresh may have read the database just before the change. It is kept,
  but not counted as fresh, so the next read refreshes again instead of serving the stale
  snapshot for a whole interval.
* **An outage keeps the last good snapshot.** A database error (and only a database error:
  a bug must still surface) is logged and the previous snapshot served until the next
  interval; with no snapshot yet, ``initial`` is served if the store has one (runtime
  configuration: the settings alone), else the error propagates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

__all__ = ["DATABASE_ERRORS", "ActivationSnapshot"]

DATABASE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)
"""What an unreachable or broken store raises (drivers raise OSError for a lost socket)."""

SnapshotT = TypeVar("SnapshotT")


class ActivationSnapshot(Generic[SnapshotT]):
    """The last good snapshot of a store's active rows, refreshed at most every ``refresh_s``.

    ``refresh(previous)`` reads the store: it returns ``previous`` itself when the newest
    activation id has not moved (so caches kept on the snapshot object survive), else a
    newly loaded snapshot.
    """

    def __init__(
        self,
        refresh: Callable[[SnapshotT | None], Awaitable[SnapshotT]],
        *,
        refresh_s: float,
        log: logging.Logger,
        what: str,
        initial: SnapshotT | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._refresh = refresh
        self._refresh_s = refresh_s
        self._log = log
        self._what = what
        self._initial = initial
        self._clock = clock
        self._snapshot: SnapshotT | None = None
        self._checked_at = float("-inf")
        # Bumped by every local change: a refresh that began before it must not count as fresh.
        self._generation = 0
        self._lock = asyncio.Lock()

    async def current(self) -> SnapshotT:
        """The snapshot to serve now (no query while it is younger than ``refresh_s``)."""
        snapshot = self._snapshot
        if snapshot is not None and self._fresh():
            return snapshot
        async with self._lock:
            # Whoever held the lock may have refreshed already.
            snapshot = self._snapshot
            if snapshot is not None and self._fresh():
                return snapshot
            generation = self._generation
            try:
                snapshot = await self._refresh(snapshot)
            except DATABASE_ERRORS as exc:
                fallback = snapshot if snapshot is not None else self._initial
                if fallback is None:
                    raise
                # Requests must not fail because the store hiccups: keep what we had and try
                # again after refresh_s.
                self._log.warning(
                    "%s not refreshed; keeping the last snapshot",
                    self._what,
                    extra={"error_type": type(exc).__name__},
                )
                snapshot = fallback
            self._snapshot = snapshot
            if generation == self._generation:
                self._checked_at = self._clock()
            return snapshot

    def invalidate(self) -> None:
        """Make the next :meth:`current` read the store (this replica just changed it)."""
        self._generation += 1
        self._checked_at = float("-inf")

    def _fresh(self) -> bool:
        return self._clock() - self._checked_at < self._refresh_s
