"""The token-quota ledger in Redis, shared by every API process (see :mod:`api.security.quotas`).

One Lua script per operation makes it atomic across processes: ``reserve`` reads every
scope's counter, refuses if any would go over, else adds the tokens to all of them, and
sets the once-per-period alarm markers with ``SET NX`` -- all in one step, so concurrent
requests can never together exceed a quota and an alarm fires in exactly one process.

Keys (``<prefix>`` from ``limits.key_prefix``)::

    <prefix>:quota:<user|tenant>:<id>:<period>:<period label>          tokens committed
    <prefix>:quota:<user|tenant>:<id>:<period>:<period label>:alarm:<level>   marker

Every key expires at the end of its period (``EXPIREAT``), so nothing needs sweeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

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
from core.errors import ServiceUnavailable

__all__ = ["RedisQuotaLedger"]


@asynccontextmanager
async def store_errors_as_unavailable(what: str) -> AsyncIterator[None]:
    """Turn a Redis failure into a 503 with Retry-After instead of a 500 (or a hang)."""
    try:
        yield
    except RedisError as exc:
        msg = f"The {what} store is unavailable; retry in a few seconds."
        raise ServiceUnavailable(msg, retry_after=5) from exc


# KEYS[1..n] counters, KEYS[n+1 .. n+n*m] alarm markers (scope-major).
# ARGV: n, m, tokens (reserve) or delta (settle), limit_1..n, expire_at_1..n, level_1..m.
_COMMON = """
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local function limit(i) return tonumber(ARGV[3 + i]) end
local function expire_at(i) return ARGV[3 + n + i] end
local function alarms(i, demand, fired)
  for j = 1, m do
    local level = tonumber(ARGV[3 + 2 * n + j])
    if demand * 100 >= level * limit(i) then
      if redis.call('SET', KEYS[n + (i - 1) * m + j], '1', 'NX', 'EXAT', expire_at(i)) then
        fired[#fired + 1] = i
        fired[#fired + 1] = level
      end
    end
  end
end
"""

_RESERVE = (
    _COMMON
    + """
local used, refused, fired = {}, {}, {}
for i = 1, n do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used[i] + amount > limit(i) then refused[#refused + 1] = i end
end
for i = 1, n do
  if #refused == 0 then
    redis.call('INCRBY', KEYS[i], amount)
    redis.call('EXPIREAT', KEYS[i], expire_at(i))
    alarms(i, used[i] + amount, fired)
  elseif used[i] + amount > limit(i) then
    alarms(i, used[i] + amount, fired)
  end
end
return {#refused == 0 and 1 or 0, used, fired}
"""
)

_SETTLE = (
    _COMMON
    + """
local fired = {}
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local now_used = redis.call('INCRBY', KEYS[i], amount)
    if now_used < 0 then
      redis.call('SET', KEYS[i], '0', 'KEEPTTL')
      now_used = 0
    end
    if amount > 0 then alarms(i, now_used, fired) end
  end
end
return fired
"""
)


class RedisQuotaLedger:
    """A quota ledger any number of API processes share through one Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str = "enclave",
        alarm_levels: Sequence[int] = (50, 80, 100),
        on_alarm: AlarmCallback | None = None,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}:quota"
        self._levels = tuple(sorted(alarm_levels))
        self._alarms = AlarmEmitter(on_alarm, registry)
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    async def forget_user(self, subject: str) -> int:
        """Drop a user's usage counters and alarm markers (erasure)."""
        pattern = f"{self._prefix}:user:{subject}:*"
        async with store_errors_as_unavailable("forget usage"):
            keys = [key async for key in self._redis.scan_iter(match=pattern, count=500)]
            if keys:
                await self._redis.delete(*keys)
        return len(keys)

    def _key(self, scope: QuotaScope, start: datetime) -> str:
        label = period_label(scope.period, start)
        return f"{self._prefix}:{scope.kind}:{scope.id}:{scope.period}:{label}"

    def _script_args(
        self, scopes: Sequence[QuotaScope], starts: Sequence[datetime], amount: int
    ) -> tuple[list[str], list[Any]]:
        counters = [self._key(s, start) for s, start in zip(scopes, starts, strict=True)]
        markers = [f"{key}:alarm:{level}" for key in counters for level in self._levels]
        ends = [period_bounds(s.period, start)[1] for s, start in zip(scopes, starts, strict=True)]
        args: list[Any] = [len(scopes), len(self._levels), amount]
        args += [s.limit for s in scopes]
        args += [int(end.timestamp()) for end in ends]
        args += list(self._levels)
        return counters + markers, args

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
        """Hold ``tokens`` in every scope, or raise :class:`QuotaExceeded` holding none."""
        if tokens < 0:
            msg = "tokens must be >= 0"
            raise ValueError(msg)
        now = self._clock()
        starts = [period_bounds(s.period, now)[0] for s in scopes]
        ends = [period_bounds(s.period, now)[1] for s in scopes]
        keys, args = self._script_args(scopes, starts, tokens)
        async with store_errors_as_unavailable("quota"):
            granted, used_raw, fired = await self._reserve(keys=keys, args=args)
        used = [int(u) for u in used_raw]
        demand = [u + tokens for u in used]
        await self._alarms.emit(self._alarms_from(fired, scopes, starts, demand))
        if not granted:
            refused = [(s, used[i], ends[i]) for i, s in enumerate(scopes) if demand[i] > s.limit]
            raise quota_exceeded(refused, tokens, now)
        return Reservation(
            scopes=tuple(scopes),
            tokens=tokens,
            period_starts=tuple(starts),
            balances=tuple(
                QuotaBalance(s, demand[i], max(0, s.limit - demand[i]), ends[i])
                for i, s in enumerate(scopes)
            ),
        )

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Replace the reserved amount by ``used_tokens`` (in the reservation's period)."""
        if reservation.settled:
            msg = "this reservation was already settled"
            raise RuntimeError(msg)
        reservation.settled = True
        delta = max(0, used_tokens) - reservation.tokens
        if delta == 0 or not reservation.scopes:
            return
        keys, args = self._script_args(reservation.scopes, reservation.period_starts, delta)
        async with store_errors_as_unavailable("quota"):
            fired = await self._settle(keys=keys, args=args)
            # Usage after settling, for the alarm events (read back; alarms are rare).
            values = await self._redis.mget(keys[: len(reservation.scopes)]) if fired else []
        if fired:
            demand = [int(v or 0) for v in values]
            alarms = self._alarms_from(fired, reservation.scopes, reservation.period_starts, demand)
            await self._alarms.emit(alarms)

    async def balance(self, scope: QuotaScope) -> QuotaBalance:
        """The scope's standing in the current period."""
        start, end = period_bounds(scope.period, self._clock())
        async with store_errors_as_unavailable("quota"):
            raw = await self._redis.get(self._key(scope, start))
        used = int(raw or 0)
        return QuotaBalance(scope, used, max(0, scope.limit - used), end)
