"""Token quotas per user and per tenant: reserve before generating, settle afterwards.

A request **reserves** its worst case (``max_tokens``, plus its prompt if the caller counts
it) in every scope at once -- user and tenant -- or in none: one scope refusing refuses the
request with :class:`QuotaExceeded` (429, ``Retry-After`` = seconds to the reset). After
the answer it **settles** with the real usage, which gives back what was not used
(``settle(reservation, 0)`` releases a request that failed before generating).

Periods are calendar periods in UTC (:func:`period_bounds`): an ``hour`` quota resets at
the top of the hour, ``day`` at midnight, ``month`` on the 1st at 00:00. Counters are keyed
by period, so a reservation always settles against the period it was taken in; one taken
just before a reset and settled after it changes nothing (that period is over).

**Alarms.** Each level in ``alarm_levels`` (50/80/100 %) fires once per scope and period
when the *demand* -- tokens committed in the period plus those the request asks for --
reaches it: a granted reservation counts what it commits, a refused one what it would
have needed, so a refusal always fires the 100 % alarm once. An alarm is logged, counted
in ``enclave_quota_alarms_total{scope,level}`` and handed to the ``on_alarm`` callback
(later: the webhook). Delivery is at most once: a marker is set atomically before the
event is emitted (:mod:`api.security.quotas_redis` for the Redis ledger).

Two ledgers implement :class:`QuotaLedger`: :class:`MemoryQuotaLedger` (one process, an
asyncio lock) here and ``RedisQuotaLedger`` (any number of processes, one Lua script).

**Leases.** A reservation nobody will settle is given back within a bounded time instead of
holding "quota exceeded" until the period ends: when the request task that took it ends
without settling (both ledgers, :mod:`api.security.quota_leases`), and when its API process
dies (the Redis ledger's process lease, ``limits.reservation_lease_ttl_s``). Reclaimed
tokens count in ``enclave_quota_reclaimed_tokens_total{reason}``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from api.security.errors import QuotaExceeded
from api.security.principal import Principal
from api.security.quota_leases import RequestLeases, reclaimed_tokens_counter
from core.settings import LimitsSettings, QuotaPeriod

__all__ = [
    "AlarmCallback",
    "MemoryQuotaLedger",
    "QuotaAlarm",
    "QuotaBalance",
    "QuotaLedger",
    "QuotaScope",
    "Reservation",
    "ScopeKind",
    "period_bounds",
    "quota_scopes",
]

_log = logging.getLogger("enclave.api.quota")

ScopeKind = Literal["user", "tenant"]
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class QuotaScope:
    """One budget: whose (``kind``/``id``), how many tokens, per which period."""

    kind: ScopeKind
    id: str
    limit: int
    period: QuotaPeriod


@dataclass(frozen=True, slots=True)
class QuotaBalance:
    """Where a scope stands in its current period (``used`` includes reservations)."""

    scope: QuotaScope
    used: int
    remaining: int
    resets_at: datetime


@dataclass(slots=True)
class Reservation:
    """Tokens held in every scope until :meth:`QuotaLedger.settle`; settle exactly once.

    ``reclaimed``: the ledger released it because its request ended unsettled. A reservation
    with no scopes and no balances was admitted unmetered (the store was down, fail_open).
    """

    scopes: tuple[QuotaScope, ...]
    tokens: int
    period_starts: tuple[datetime, ...]
    balances: tuple[QuotaBalance, ...]
    settled: bool = False
    reclaimed: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True, slots=True)
class QuotaAlarm:
    """A scope's demand reached ``level`` % of its quota (emitted once per period)."""

    scope: QuotaScope
    level: int
    used: int
    period_start: datetime
    resets_at: datetime


AlarmCallback = Callable[[QuotaAlarm], Awaitable[None] | None]


class QuotaLedger(Protocol):
    """Reserves, settles and reports token budgets."""

    async def reserve(self, scopes: Sequence[QuotaScope], tokens: int) -> Reservation:
        """Hold ``tokens`` in every scope, or raise :class:`QuotaExceeded` holding none."""
        ...

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Replace the reserved amount by what was really used."""
        ...

    async def balance(self, scope: QuotaScope) -> QuotaBalance:
        """The scope's standing in the current period."""
        ...

    async def forget_user(self, subject: str) -> int:
        """Drop a user's usage records (erasure); returns how many counters went."""
        ...

    async def start(self) -> None:
        """Begin background work (the Redis ledger's lease heartbeat and reclaimer)."""
        ...

    async def stop(self) -> None:
        """End background work and give back what this process still holds."""
        ...


def period_bounds(period: QuotaPeriod, now: datetime) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of the UTC calendar period holding ``now``."""
    now = now.astimezone(UTC)
    if period == "hour":
        start = now.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def period_label(period: QuotaPeriod, start: datetime) -> str:
    """A compact, sortable name of the period starting at ``start`` (used in keys)."""
    return start.strftime({"hour": "%Y%m%dT%H", "day": "%Y%m%d", "month": "%Y%m"}[period])


def quota_scopes(
    principal: Principal,
    limits: LimitsSettings,
    *,
    user_tokens: int | None = None,
    tenant_tokens: int | None = None,
) -> tuple[QuotaScope, ...]:
    """The user and tenant budgets of ``principal`` (unlimited ones left out): the
    settings' amounts, or the tenant's runtime configuration's when given."""
    scopes: list[QuotaScope] = []
    user, tenant = limits.user_tokens, limits.tenant_tokens
    user_limit = user_tokens if user_tokens is not None else user.tokens
    tenant_limit = tenant_tokens if tenant_tokens is not None else tenant.tokens
    if user_limit is not None:
        scopes.append(QuotaScope("user", principal.subject, user_limit, user.period))
    if tenant_limit is not None:
        scopes.append(QuotaScope("tenant", principal.tenant, tenant_limit, tenant.period))
    return tuple(scopes)


_ADJECTIVE: dict[QuotaPeriod, str] = {"hour": "hourly", "day": "daily", "month": "monthly"}


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes = math.ceil(rest / 60)
    if hours >= 48:
        return f"{hours // 24} days"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def quota_exceeded(
    refused: Sequence[tuple[QuotaScope, int, datetime]], tokens: int, now: datetime
) -> QuotaExceeded:
    """The 429 for the refusing scopes ``(scope, used, resets_at)``: when each resets."""
    # The request fits again only once every refusing scope has reset.
    scope, used, resets_at = max(refused, key=lambda item: item[2])
    retry_after = math.ceil((resets_at - now).total_seconds())
    whose = "your" if scope.kind == "user" else "your tenant's"
    remaining = max(0, scope.limit - used)
    detail = (
        f"This request needs up to {tokens} tokens but {whose} {_ADJECTIVE[scope.period]} "
        f"token quota has {remaining} of {scope.limit} left. It resets at "
        f"{resets_at:%Y-%m-%d %H:%M} UTC (in {_duration(retry_after)}); ask for fewer tokens "
        "(max_tokens) or wait until then."
    )
    extra = {
        "quota_scope": scope.kind,
        "quota_limit": scope.limit,
        "quota_remaining": remaining,
        "quota_resets_at": resets_at.isoformat(),
    }
    return QuotaExceeded(detail, retry_after=retry_after, extra=extra)


class AlarmEmitter:
    """Logs, counts and delivers quota alarms (one per ledger; owns the metric)."""

    def __init__(self, on_alarm: AlarmCallback | None, registry: CollectorRegistry | None) -> None:
        self._on_alarm = on_alarm
        self._counter = Counter(
            "enclave_quota_alarms_total",
            "Quota thresholds crossed (once per scope and period).",
            ["scope", "level"],
            registry=REGISTRY if registry is None else registry,
        )

    async def emit(self, alarms: Sequence[QuotaAlarm]) -> None:
        """Deliver each alarm; a failing callback is logged, never raised to the request."""
        for alarm in alarms:
            self._counter.labels(scope=alarm.scope.kind, level=str(alarm.level)).inc()
            _log.warning(
                "quota alarm",
                extra={
                    "quota_scope": alarm.scope.kind,
                    "quota_id": alarm.scope.id,
                    "level": alarm.level,
                    "used": alarm.used,
                    "limit": alarm.scope.limit,
                    "period": alarm.scope.period,
                },
            )
            if self._on_alarm is None:
                continue
            try:
                result = self._on_alarm(alarm)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # The user's request must not fail because an alarm sink is down.
                _log.exception("quota alarm delivery failed", extra={"level": alarm.level})


def alarm_levels_reached(levels: Sequence[int], demand: int, limit: int) -> list[int]:
    """The levels (percent) that ``demand`` reaches against ``limit``."""
    return [level for level in levels if demand * 100 >= level * limit]


class MemoryQuotaLedger:
    """A :class:`QuotaLedger` for one process: counters in a dict behind an asyncio lock."""

    def __init__(
        self,
        *,
        alarm_levels: Sequence[int] = (50, 80, 100),
        on_alarm: AlarmCallback | None = None,
        registry: CollectorRegistry | None = None,
        clock: Clock = _utc_now,
    ) -> None:
        self._levels = tuple(sorted(alarm_levels))
        self._alarms = AlarmEmitter(on_alarm, registry)
        self._leases = RequestLeases[Reservation](
            lambda held: self.settle(held, 0), reclaimed_tokens_counter(registry)
        )
        self._clock = clock
        self._lock = asyncio.Lock()
        # key -> (tokens committed, end of its period); fired: (key, level)
        self._used: dict[str, tuple[int, datetime]] = {}
        self._fired: set[tuple[str, int]] = set()

    @staticmethod
    def _key(scope: QuotaScope, start: datetime) -> str:
        return f"{scope.kind}:{scope.id}:{scope.period}:{period_label(scope.period, start)}"

    async def start(self) -> None:
        """Nothing to start: one process, no lease to renew."""

    async def stop(self) -> None:
        """Finish releasing the reservations of requests that ended unsettled."""
        await self._leases.drain()

    async def forget_user(self, subject: str) -> int:
        """Drop a user's usage counters and alarm markers (erasure)."""
        async with self._lock:
            prefix = f"user:{subject}:"
            doomed = [key for key in self._used if key.startswith(prefix)]
            for key in doomed:
                del self._used[key]
            self._fired = {item for item in self._fired if not item[0].startswith(prefix)}
        return len(doomed)

    def _prune(self, now: datetime) -> None:
        over = [key for key, (_, end) in self._used.items() if end <= now]
        for key in over:
            del self._used[key]
        if over:
            gone = set(over)
            self._fired = {item for item in self._fired if item[0] not in gone}

    def _alarms_for(
        self, scope: QuotaScope, key: str, demand: int, start: datetime, end: datetime
    ) -> list[QuotaAlarm]:
        fired = []
        for level in alarm_levels_reached(self._levels, demand, scope.limit):
            if (key, level) not in self._fired:
                self._fired.add((key, level))
                fired.append(QuotaAlarm(scope, level, demand, start, end))
        return fired

    async def reserve(self, scopes: Sequence[QuotaScope], tokens: int) -> Reservation:
        """Hold ``tokens`` in every scope, or raise :class:`QuotaExceeded` holding none."""
        if tokens < 0:
            msg = "tokens must be >= 0"
            raise ValueError(msg)
        async with self._lock:
            now = self._clock()
            self._prune(now)
            bounds = [period_bounds(s.period, now) for s in scopes]
            keys = [self._key(s, start) for s, (start, _) in zip(scopes, bounds, strict=True)]
            used = [self._used.get(key, (0, now))[0] for key in keys]
            refused = [i for i, s in enumerate(scopes) if used[i] + tokens > s.limit]
            alarms: list[QuotaAlarm] = []
            for i, scope in enumerate(scopes):
                if refused and i not in refused:
                    continue
                start, end = bounds[i]
                alarms += self._alarms_for(scope, keys[i], used[i] + tokens, start, end)
                if not refused:
                    self._used[keys[i]] = (used[i] + tokens, end)
        await self._alarms.emit(alarms)
        if refused:
            raise quota_exceeded([(scopes[i], used[i], bounds[i][1]) for i in refused], tokens, now)
        reservation = Reservation(
            scopes=tuple(scopes),
            tokens=tokens,
            period_starts=tuple(start for start, _ in bounds),
            balances=tuple(
                QuotaBalance(s, used[i] + tokens, max(0, s.limit - used[i] - tokens), bounds[i][1])
                for i, s in enumerate(scopes)
            ),
        )
        self._leases.watch(reservation)
        return reservation

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Replace the reserved amount by ``used_tokens`` (in the reservation's period)."""
        if reservation.settled:
            msg = "this reservation was already settled"
            raise RuntimeError(msg)
        reservation.settled = True
        delta = max(0, used_tokens) - reservation.tokens
        alarms: list[QuotaAlarm] = []
        async with self._lock:
            for scope, start in zip(reservation.scopes, reservation.period_starts, strict=True):
                key = self._key(scope, start)
                if key not in self._used:
                    continue  # that period is over
                committed, end = self._used[key]
                committed = max(0, committed + delta)
                self._used[key] = (committed, end)
                if delta > 0:
                    alarms += self._alarms_for(scope, key, committed, start, end)
        await self._alarms.emit(alarms)

    async def balance(self, scope: QuotaScope) -> QuotaBalance:
        """The scope's standing in the current period."""
        async with self._lock:
            now = self._clock()
            start, end = period_bounds(scope.period, now)
            used, _ = self._used.get(self._key(scope, start), (0, end))
        return QuotaBalance(scope, used, max(0, scope.limit - used), end)
