"""Reservations that nobody will settle are given back: the request-task lease.

A reservation is settled by the request that took it, when its answer ends -- done, failed
or cancelled. Two things can still leave one open: the request's task ends on a path that
never reaches the settle (a response whose body generator never started, so its
``finally`` never runs), or the whole process dies. The second is the Redis ledger's
process lease (:mod:`api.security.quotas_redis`). The first is handled here, for both
ledgers: each reservation is tied to the asyncio task that took it -- the request's task,
which lives until the response is sent -- and when that task is done while the reservation
is still open, the ledger releases it (settles it with 0 tokens: the request's real use is
unknown, and it answered nobody). This makes the settle certain without trusting every
code path of every route.

Released tokens are counted in ``enclave_quota_reclaimed_tokens_total{reason}``:
``request_ended`` here, ``lease_expired`` when a dead process's reservations are reclaimed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Generic, Literal, Protocol, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter

__all__ = ["RECLAIM_REASONS", "ReclaimReason", "RequestLeases", "reclaimed_tokens_counter"]

_log = logging.getLogger("enclave.api.quota")

ReclaimReason = Literal["request_ended", "lease_expired"]
RECLAIM_REASONS: Final[tuple[ReclaimReason, ...]] = ("request_ended", "lease_expired")


class _Held(Protocol):
    tokens: int
    settled: bool
    reclaimed: bool


HeldT = TypeVar("HeldT", bound=_Held)


def reclaimed_tokens_counter(registry: CollectorRegistry | None) -> Counter:
    """``enclave_quota_reclaimed_tokens_total``, every reason's series from zero."""
    counter = Counter(
        "enclave_quota_reclaimed_tokens_total",
        "Reserved tokens given back to quotas because nobody would settle them: the request "
        "ended without settling, or its API process died (its lease expired).",
        ["reason"],
        registry=REGISTRY if registry is None else registry,
    )
    for reason in RECLAIM_REASONS:
        counter.labels(reason=reason)
    return counter


class RequestLeases(Generic[HeldT]):
    """Releases a reservation once the task that took it is done and it is still open."""

    def __init__(self, release: Callable[[HeldT], Awaitable[None]], reclaimed: Counter) -> None:
        self._release = release
        self._reclaimed = reclaimed
        self._releasing: set[asyncio.Task[None]] = set()

    def watch(self, reservation: HeldT) -> None:
        """Tie ``reservation`` to the running task (the request's)."""
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _task: self._owner_ended(reservation))

    def _owner_ended(self, reservation: HeldT) -> None:
        if reservation.settled:
            return
        # Done callbacks run inside the loop; the release awaits the ledger (and Redis).
        job = asyncio.get_running_loop().create_task(self._reclaim(reservation))
        self._releasing.add(job)
        job.add_done_callback(self._releasing.discard)

    async def _reclaim(self, reservation: HeldT) -> None:
        if reservation.settled:
            return
        try:
            await self._release(reservation)
        except Exception:
            # The Redis ledger retries failed settles itself; this is a bug's trace, not a loop.
            _log.exception("releasing an abandoned quota reservation failed")
            return
        reservation.reclaimed = True
        self._reclaimed.labels(reason="request_ended").inc(reservation.tokens)
        _log.warning(
            "quota reservation released: its request ended without settling it",
            extra={"tokens": reservation.tokens},
        )

    async def drain(self) -> None:
        """Wait for the releases under way (shutdown; tests)."""
        # One turn of the loop first: a task that just ended has its done callbacks queued.
        await asyncio.sleep(0)
        while self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
