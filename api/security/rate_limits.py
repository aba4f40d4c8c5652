"""Request rate limits per user and per tenant, over a Litestar ``Store``.

**Algorithm: fixed one-minute windows.** Each (scope, id, window) has a counter that
expires with its window. A request is admitted only if *both* its user and its tenant
counter are under their limits, and then both are incremented -- a refused request counts
against neither, so a client that backs off as told by ``Retry-After`` (the seconds left
in the window) gets in at once. Fixed windows can let up to twice the rate through around
a window boundary; token quotas (:mod:`api.security.quotas`) bound what that costs, and in
exchange the state is one integer per key and ``Retry-After`` is exact.

**Why not Litestar's ``RateLimitConfig``.** Its middleware limits one identifier per
instance, runs before authentication (so it sees no user or tenant), and updates its
counter with a read-modify-write of a JSON history guarded by a per-process lock: several
API replicas sharing Redis would lose updates and let more through. So this is a small
limiter over the ``Store`` objects instead: with a ``RedisStore`` it runs one Lua script
on the store's client and in its namespace (atomic across processes); with any other store
(``MemoryStore``, the default) it uses ``get``/``set`` behind an asyncio lock, which is
exact within the one process such a store serves.

**Redis unavailable.** The hit follows ``limits.on_store_unavailable``
(:mod:`api.security.store_outage`): a 503 with ``Retry-After``, or an unmetered pass.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from api.security.errors import RateLimited
from api.security.principal import Principal
from api.security.store_outage import StoreOutage
from core.settings import LimitsSettings

__all__ = ["RateDecision", "RateLimiter", "build_limits_store"]

WINDOW_S = 60

# KEYS: user counter, tenant counter. ARGV: user limit, tenant limit (0: unlimited), ttl.
_HIT = """
local counts = {}
for i = 1, 2 do
  counts[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  local limit = tonumber(ARGV[i])
  if limit > 0 and counts[i] >= limit then return {0, counts[1], counts[2] or 0, i} end
end
for i = 1, 2 do
  if tonumber(ARGV[i]) > 0 then
    counts[i] = redis.call('INCR', KEYS[i])
    redis.call('EXPIRE', KEYS[i], ARGV[3])
  end
end
return {1, counts[1], counts[2], 0}
"""


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one request: allowed or not, and what the headers should say."""

    allowed: bool
    limit: int | None
    remaining: int | None
    reset_in: int
    scope: str | None = None

    @property
    def retry_after(self) -> int:
        """Seconds until the window resets (at least 1)."""
        return max(1, self.reset_in)

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` headers (IETF draft) for the tighter of the two limits."""
        if self.limit is None or self.remaining is None:
            return {}
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_in),
        }


class RateLimiter:
    """Per-user and per-tenant request rates, shared through a Litestar store."""

    def __init__(
        self,
        store: Store,
        *,
        user_per_minute: int | None,
        tenant_per_minute: int | None,
        clock: Callable[[], float] = time.time,
        outage: StoreOutage | None = None,
    ) -> None:
        self._store = store
        # Without one given (a test's limiter): fail closed, counted on a private registry.
        self._outage = outage or StoreOutage("fail_closed", CollectorRegistry())
        self._user_limit = user_per_minute
        self._tenant_limit = tenant_per_minute
        self._clock = clock
        self._lock = asyncio.Lock()
        self._script = None
        if isinstance(store, RedisStore):
            # RedisStore has no atomic increment; use its client and key namespace.
            redis: Redis = store._redis
            self._script = redis.register_script(_HIT)

    @classmethod
    def from_settings(
        cls, limits: LimitsSettings, store: Store, outage: StoreOutage | None = None
    ) -> RateLimiter:
        """A limiter with the configured per-minute rates (and outage policy, if given)."""
        return cls(
            store,
            user_per_minute=limits.user_requests_per_minute,
            tenant_per_minute=limits.tenant_requests_per_minute,
            outage=outage,
        )

    def _keys(self, subject: str, tenant: str, window: int) -> tuple[str, str]:
        return f"rate:user:{subject}:{window}", f"rate:tenant:{tenant}:{window}"

    async def hit(self, principal: Principal) -> RateDecision:
        """Count one request of ``principal`` if both limits allow it."""
        now = self._clock()
        window = int(now // WINDOW_S)
        reset_in = math.ceil((window + 1) * WINDOW_S - now)
        keys = self._keys(principal.subject, principal.tenant, window)
        limits = (self._user_limit or 0, self._tenant_limit or 0)
        if self._script is not None:
            assert isinstance(self._store, RedisStore)
            names = [self._store._make_key(key) for key in keys]
            try:
                allowed, user_count, tenant_count, refused = await self._script(
                    keys=names, args=[*limits, WINDOW_S + 1]
                )
            except RedisError as exc:
                self._outage.admit_unmetered("rate_limit", exc)  # raises unless fail_open
                return RateDecision(True, None, None, reset_in)
            counts = (int(user_count), int(tenant_count))
        else:
            allowed, counts, refused = await self._hit_store(keys, limits, reset_in)
        return self._decision(bool(allowed), counts, int(refused), reset_in)

    async def enforce(self, principal: Principal) -> RateDecision:
        """Like :meth:`hit`, but raise :class:`RateLimited` when refused."""
        decision = await self.hit(principal)
        if not decision.allowed:
            whose = "you" if decision.scope == "user" else "your tenant"
            msg = (
                f"Too many requests: {whose} may make {decision.limit} per minute. "
                f"Retry in {decision.retry_after} s."
            )
            raise RateLimited(
                msg,
                retry_after=decision.retry_after,
                extra={"limit_scope": decision.scope, "limit": decision.limit},
            )
        return decision

    async def _hit_store(
        self, keys: tuple[str, str], limits: tuple[int, int], reset_in: int
    ) -> tuple[bool, tuple[int, int], int]:
        async with self._lock:
            raw = [await self._store.get(key) for key in keys]
            counts = [int(value) if value else 0 for value in raw]
            for i in range(2):
                if limits[i] and counts[i] >= limits[i]:
                    return False, (counts[0], counts[1]), i + 1
            for i in range(2):
                if limits[i]:
                    counts[i] += 1
                    await self._store.set(
                        keys[i], str(counts[i]), expires_in=timedelta(seconds=reset_in)
                    )
        return True, (counts[0], counts[1]), 0

    def _decision(
        self, allowed: bool, counts: tuple[int, int], refused: int, reset_in: int
    ) -> RateDecision:
        scopes = (("user", self._user_limit, counts[0]), ("tenant", self._tenant_limit, counts[1]))
        if not allowed:
            scope, limit, _ = scopes[refused - 1]
            return RateDecision(False, limit, 0, reset_in, scope)
        limited = [(limit - count, limit, name) for name, limit, count in scopes if limit]
        if not limited:
            return RateDecision(True, None, None, reset_in)
        remaining, limit, name = min(limited)
        return RateDecision(True, limit, max(0, remaining), reset_in, name)


def build_limits_store(limits: LimitsSettings) -> Store:
    """The store the settings ask for: a ``MemoryStore``, or a ``RedisStore`` on redis_url."""
    if limits.store == "memory":
        return MemoryStore()
    assert limits.redis_url is not None
    password = None
    if limits.redis_password_file is not None:
        password = limits.redis_password_file.read_text(encoding="utf-8").strip()
    # Short timeouts and two quick retries (a dropped connection is retried; redis-py's own
    # default, ten retries with backoff, holds each request for seconds): a stalled or
    # down Redis must become the outage policy's answer at once, never a hung request.
    redis = Redis.from_url(
        limits.redis_url,
        password=password,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=2),
    )
    return RedisStore(redis, namespace=limits.key_prefix, handle_client_shutdown=True)
