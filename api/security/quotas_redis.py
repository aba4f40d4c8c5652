"""The token-quota ledger in Redis, shared by every API process (see :mod:`api.security.quotas`).

One Lua script per operation makes it atomic across processes
(:mod:`api.security.quotas_redis_scripts`): ``reserve`` reads every scope's counter, refuses
if any would go over, else adds the tokens to all of them, records the reservation under
this process's lease, and sets the once-per-period alarm markers with ``SET NX`` -- all in
one step, so concurrent requests can never together exceed a quota and an alarm fires in
exactly one process.

**Process leases.** Each ledger (one per API process) holds a lease: a key with a TTL
(``limits.reservation_lease_ttl_s``) that a background task renews every third of it, and a
hash of the reservations it holds open. Every live process also runs the reclaimer on that
schedule: one script that finds leases whose key has expired -- their process died or
stalled past the TTL -- and gives their open reservations back to the counters. So a
crashed process's reservations stop counting within about 1.3 x the TTL, instead of
holding "quota exceeded" until the period ends. A process that was only stalled settles
its reservations later as usual: a reclaimed one is charged what it used, never subtracted
twice. The tokens of a reclaimed reservation are charged nothing (the process that knew
what it generated is gone).

Keys (``<prefix>`` from ``limits.key_prefix``)::

    <prefix>:quota:<user|tenant>:<id>:<period>:<period label>          tokens committed
    <prefix>:quota:<user|tenant>:<id>:<period>:<period label>:alarm:<level>   marker
    <prefix>:quota:leases                          set of lease ids that held reservations
    <prefix>:quota:lease:<lease id>                alive while its TTL runs (renewed)
    <prefix>:quota:lease:<lease id>:open           hash: reservation id -> tokens, counters

Counters and markers expire at the end of their period (``EXPIREAT``), a lease's open hash
at the end of the last period it holds tokens of; the reclaimer forgets dead leases.

**Redis unavailable.** ``reserve`` follows ``limits.on_store_unavailable``
(:mod:`api.security.store_outage`); a settle that fails is kept and retried by the
background task (the answer was already given: its usage must not be lost, nor fail it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.security.quota_leases import RequestLeases, reclaimed_tokens_counter
from api.security.quotas import (
    AlarmCallback,
    AlarmEmitter,
    Clock,
    QuotaAlarm,
    QuotaBalance,
    QuotaScope,
    Reservation,
    period_bounds,
    period_label,
    quota_exceeded,
)
from api.security.quotas_redis_scripts import RECLAIM, RESERVE, SETTLE
from api.security.store_outage import StoreOutage

__all__ = ["RedisQuotaLedger"]

_log = logging.getLogger("enclave.api.quota")


class RedisQuotaLedger:
    """A quota ledger any number of API processes share through one Redis.

    Call :meth:`start` once the event loop runs (the app does, on start-up) and :meth:`stop`
    on shutdown: the lease heartbeat and the reclaimer run between them.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str = "enclave",
        alarm_levels: Sequence[int] = (50, 80, 100),
        on_alarm: AlarmCallback | None = None,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        lease_ttl_s: float = 30.0,
        outage: StoreOutage | None = None,
    ) -> None:
        if lease_ttl_s <= 0:
            msg = "lease_ttl_s must be > 0"
            raise ValueError(msg)
        self._redis = redis
        self._prefix = f"{key_prefix}:quota"
        self._levels = tuple(sorted(alarm_levels))
        self._alarms = AlarmEmitter(on_alarm, registry)
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._outage = outage or StoreOutage("fail_closed", CollectorRegistry())
        self._reserve = redis.register_script(RESERVE)
        self._settle = redis.register_script(SETTLE)
        self._reclaim = redis.register_script(RECLAIM)
        self.lease_id = uuid.uuid4().hex
        self._lease_ttl_ms = max(1, round(lease_ttl_s * 1000))
        self._lease_set = f"{self._prefix}:leases"
        self._lease_key_prefix = f"{self._prefix}:lease:"
        self._lease_key = f"{self._lease_key_prefix}{self.lease_id}"
        self._open_key = f"{self._lease_key}:open"
        self._reclaimed = reclaimed_tokens_counter(registry)
        self._leases = RequestLeases[Reservation](
            lambda held: self.settle(held, 0), self._reclaimed
        )
        self._unsettled: list[tuple[Reservation, int]] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # --- lease ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start renewing this process's lease and reclaiming dead processes' reservations."""
        if self._heartbeat is None or self._heartbeat.done():
            self._stopping = asyncio.Event()
            self._heartbeat = asyncio.get_running_loop().create_task(self._maintain())

    async def stop(self) -> None:
        """Stop the heartbeat, settle what is pending and give back what is still held."""
        if self._heartbeat is not None:
            # The flag ends the loop even where a Redis call swallows the cancellation
            # (redis-py can, mid-command): a cancel alone left the task sleeping on.
            self._stopping.set()
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        await self._leases.drain()
        try:
            await self._retry_settles()
            # Ending the lease now lets the reclaim below give back whatever is still open.
            await self._redis.delete(self._lease_key)
            await self.reclaim_expired()
        except RedisError as exc:
            self._outage.unavailable("quota", exc)  # counted; other processes reclaim later

    async def _maintain(self) -> None:
        interval = self._lease_ttl_ms / 3000
        while not self._stopping.is_set():
            try:
                await self.renew()
                await self._retry_settles()
                await self.reclaim_expired()
            except RedisError as exc:
                self._outage.unavailable("quota", exc)  # counted and logged; keep trying
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    async def renew(self) -> None:
        """Extend this process's lease by its TTL."""
        await self._redis.set(self._lease_key, "1", px=self._lease_ttl_ms)

    async def reclaim_expired(self) -> int:
        """Give back the open reservations of every expired lease; returns the tokens."""
        reservations, tokens, _ = await self._reclaim(
            keys=[self._lease_set], args=[self._lease_key_prefix]
        )
        if tokens:
            self._reclaimed.labels(reason="lease_expired").inc(int(tokens))
            _log.warning(
                "quota reservations of a dead API process reclaimed",
                extra={"reservations": int(reservations), "tokens": int(tokens)},
            )
        return int(tokens)

    async def _retry_settles(self) -> None:
        while self._unsettled:
            reservation, used = self._unsettled[0]
            await self._settle_in_redis(reservation, used)  # raises while Redis is down
            self._unsettled.pop(0)

    # --- ledger -----------------------------------------------------------------------

    async def forget_user(self, subject: str) -> int:
        """Drop a user's usage counters and alarm markers (erasure)."""
        pattern = f"{self._prefix}:user:{subject}:*"
        async with self._outage.required("quota"):
            keys = [key async for key in self._redis.scan_iter(match=pattern, count=500)]
            if keys:
                await self._redis.delete(*keys)
        return len(keys)

    def _key(self, scope: QuotaScope, start: datetime) -> str:
        label = period_label(scope.period, start)
        return f"{self._prefix}:{scope.kind}:{scope.id}:{scope.period}:{label}"

    def _script_args(
        self,
        scopes: Sequence[QuotaScope],
        starts: Sequence[datetime],
        amount: int,
        reservation_id: str,
        reserved: int = 0,
    ) -> tuple[list[str], list[Any]]:
        counters = [self._key(s, start) for s, start in zip(scopes, starts, strict=True)]
        markers = [f"{key}:alarm:{level}" for key in counters for level in self._levels]
        ends = [period_bounds(s.period, start)[1] for s, start in zip(scopes, starts, strict=True)]
        args: list[Any] = [len(scopes), len(self._levels), amount]
        args += [s.limit for s in scopes]
        args += [int(end.timestamp()) for end in ends]
        args += list(self._levels)
        args += [self.lease_id, self._lease_ttl_ms, reservation_id, reserved]
        keys = [*counters, *markers, self._lease_set, self._lease_key, self._open_key]
        return keys, args

    def _alarms_from(
        self,
        fired: Sequence[int],
        scopes: Sequence[QuotaScope],
        starts: Sequence[datetime],
        demand: Sequence[int],
    ) -> list[QuotaAlarm]:
        alarms = []
        for index, level in zip(fired[::2], fired[1::2], strict=True):
            i = int(index) - 1
            scope, start = scopes[i], starts[i]
            end = period_bounds(scope.period, start)[1]
            alarms.append(QuotaAlarm(scope, int(level), demand[i], start, end))
        return alarms

    async def reserve(self, scopes: Sequence[QuotaScope], tokens: int) -> Reservation:
        """Hold ``tokens`` in every scope, or raise :class:`QuotaExceeded` holding none.

        With Redis unavailable: a 503, or (fail_open) an unmetered reservation."""
        if tokens < 0:
            msg = "tokens must be >= 0"
            raise ValueError(msg)
        now = self._clock()
        starts = [period_bounds(s.period, now)[0] for s in scopes]
        ends = [period_bounds(s.period, now)[1] for s in scopes]
        reservation_id = uuid.uuid4().hex
        keys, args = self._script_args(scopes, starts, tokens, reservation_id)
        try:
            granted, used_raw, fired = await self._reserve(keys=keys, args=args)
        except RedisError as exc:
            self._outage.admit_unmetered("quota", exc)  # raises unless fail_open
            return Reservation(scopes=(), tokens=0, period_starts=(), balances=())
        used = [int(u) for u in used_raw]
        demand = [u + tokens for u in used]
        await self._alarms.emit(self._alarms_from(fired, scopes, starts, demand))
        if not granted:
            refused = [(s, used[i], ends[i]) for i, s in enumerate(scopes) if demand[i] > s.limit]
            raise quota_exceeded(refused, tokens, now)
        reservation = Reservation(
            scopes=tuple(scopes),
            tokens=tokens,
            period_starts=tuple(starts),
            balances=tuple(
                QuotaBalance(s, demand[i], max(0, s.limit - demand[i]), ends[i])
                for i, s in enumerate(scopes)
            ),
            id=reservation_id,
        )
        self._leases.watch(reservation)
        return reservation

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Replace the reserved amount by ``used_tokens`` (in the reservation's period); if a
        reclaimer gave the reservation back meanwhile, charge ``used_tokens`` instead."""
        if reservation.settled:
            msg = "this reservation was already settled"
            raise RuntimeError(msg)
        reservation.settled = True
        if not reservation.scopes:
            return
        try:
            await self._settle_in_redis(reservation, max(0, used_tokens))
        except RedisError as exc:
            self._outage.unavailable("quota", exc)  # counted; the heartbeat retries it
            self._unsettled.append((reservation, max(0, used_tokens)))

    async def _settle_in_redis(self, reservation: Reservation, used: int) -> None:
        keys, args = self._script_args(
            reservation.scopes, reservation.period_starts, used, reservation.id, reservation.tokens
        )
        fired = await self._settle(keys=keys, args=args)
        if fired:
            # Usage after settling, for the alarm events (read back; alarms are rare).
            values = await self._redis.mget(keys[: len(reservation.scopes)])
            demand = [int(v or 0) for v in values]
            alarms = self._alarms_from(fired, reservation.scopes, reservation.period_starts, demand)
            await self._alarms.emit(alarms)

    async def balance(self, scope: QuotaScope) -> QuotaBalance:
        """The scope's standing in the current period."""
        start, end = period_bounds(scope.period, self._clock())
        async with self._outage.required("quota"):
            raw = await self._redis.get(self._key(scope, start))
        used = int(raw or 0)
        return QuotaBalance(scope, used, max(0, scope.limit - used), end)
