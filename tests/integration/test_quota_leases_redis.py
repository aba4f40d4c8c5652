"""Process leases of the Redis quota ledger, in real Redis: the Lua scripts' edge cases.

Each ledger stands for one API process. A lease "dies" the way a crashed process's does:
its key's TTL runs out because nobody renews it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from api.security import QuotaScope, RedisQuotaLedger
from api.security.quotas import period_bounds, period_label

pytestmark = pytest.mark.integration

SHORT_TTL_S = 0.3  # a lease that dies quickly: no heartbeat runs in these tests


def ledger(
    redis: Redis, prefix: str, *, ttl_s: float = 30.0, registry: CollectorRegistry | None = None
) -> RedisQuotaLedger:
    return RedisQuotaLedger(
        redis, key_prefix=prefix, registry=registry or CollectorRegistry(), lease_ttl_s=ttl_s
    )


def counter_key(prefix: str, scope: QuotaScope, now: datetime) -> str:
    start = period_bounds(scope.period, now)[0]
    label = period_label(scope.period, start)
    return f"{prefix}:quota:{scope.kind}:{scope.id}:{scope.period}:{label}"


def reclaimed(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value(
        "enclave_quota_reclaimed_tokens_total", {"reason": "lease_expired"}
    )


async def used(ledger: RedisQuotaLedger, scope: QuotaScope) -> int:
    return (await ledger.balance(scope)).used


async def test_a_dead_process_reservations_are_reclaimed_by_a_live_one(
    redis: Redis, prefix: str
) -> None:
    user = QuotaScope("user", "u_dead", 1000, "day")
    tenant = QuotaScope("tenant", "t_dead", 5000, "month")
    registry = CollectorRegistry()
    dead = ledger(redis, prefix, ttl_s=SHORT_TTL_S)
    live = ledger(redis, prefix, registry=registry)
    await dead.reserve([user, tenant], 300)
    await dead.reserve([user, tenant], 200)
    kept = await live.reserve([user, tenant], 100)
    assert await used(live, user) == 600
    assert await live.reclaim_expired() == 0  # the lease still runs: nothing to take
    await asyncio.sleep(SHORT_TTL_S + 0.3)

    assert await live.reclaim_expired() == 500
    assert (await used(live, user), await used(live, tenant)) == (100, 100)
    assert reclaimed(registry) == 500.0
    # The dead lease is forgotten; the live one keeps its own open reservation.
    assert not await redis.sismember(f"{prefix}:quota:leases", dead.lease_id)
    assert not await redis.exists(f"{prefix}:quota:lease:{dead.lease_id}:open")
    assert await live.reclaim_expired() == 0  # never twice
    await live.settle(kept, 80)
    assert await used(live, user) == 80


async def test_a_renewed_lease_loses_nothing(redis: Redis, prefix: str) -> None:
    user = QuotaScope("user", "u_renewed", 1000, "day")
    slow = ledger(redis, prefix, ttl_s=0.6)
    other = ledger(redis, prefix)
    reservation = await slow.reserve([user], 400)
    for _ in range(4):  # 1.2 s in all: twice the TTL, renewed every 0.3 s
        await asyncio.sleep(0.3)
        await slow.renew()
        assert await other.reclaim_expired() == 0
    assert await used(other, user) == 400
    await slow.settle(reservation, 150)
    assert await used(other, user) == 150


async def test_settling_after_the_reclaim_charges_the_use_once(redis: Redis, prefix: str) -> None:
    """A process that stalled past its lease comes back and settles: the reclaim already gave
    the reservation back, so the settle adds what was used -- not used minus reserved."""
    user = QuotaScope("user", "u_stalled", 1000, "day")
    stalled = ledger(redis, prefix, ttl_s=SHORT_TTL_S)
    live = ledger(redis, prefix)
    reservation = await stalled.reserve([user], 300)
    other = await live.reserve([user], 100)
    await asyncio.sleep(SHORT_TTL_S + 0.3)
    assert await live.reclaim_expired() == 300
    assert await used(live, user) == 100

    await stalled.settle(reservation, 250)
    assert await used(live, user) == 350  # 100 held by the other + 250 really used
    await live.settle(other, 100)
    assert await used(live, user) == 350
    # A reclaimed reservation settled with nothing used changes nothing.
    again = await stalled.reserve([user], 50)
    await redis.delete(f"{prefix}:quota:lease:{stalled.lease_id}")  # dies at once
    assert await live.reclaim_expired() == 50
    await stalled.settle(again, 0)
    assert await used(live, user) == 350


async def test_a_reclaim_after_the_period_ended_leaves_the_new_period_alone(
    redis: Redis, prefix: str
) -> None:
    user = QuotaScope("user", "u_rollover", 1000, "day")
    today = datetime.now(UTC)
    tomorrow = today + timedelta(days=1)
    dying = ledger(redis, prefix, ttl_s=SHORT_TTL_S)
    nextday = RedisQuotaLedger(
        redis,
        key_prefix=prefix,
        registry=CollectorRegistry(),
        clock=lambda: tomorrow,
    )
    old = await dying.reserve([user], 300)
    await nextday.reserve([user], 120)  # tomorrow's counter: a different key
    await redis.delete(counter_key(prefix, user, today))  # as if today's period had ended
    await asyncio.sleep(SHORT_TTL_S + 0.3)

    assert await nextday.reclaim_expired() == 0  # nothing was left to give back
    assert not await redis.exists(counter_key(prefix, user, today))  # not recreated
    assert int(await redis.get(counter_key(prefix, user, tomorrow)) or 0) == 120
    await dying.settle(old, 200)  # its period is over: a no-op
    assert not await redis.exists(counter_key(prefix, user, today))


async def test_stopping_gives_back_what_the_process_still_holds(redis: Redis, prefix: str) -> None:
    user = QuotaScope("user", "u_stop", 1000, "day")
    registry = CollectorRegistry()
    leaving = ledger(redis, prefix, registry=registry)
    await leaving.start()
    held = asyncio.Event()

    async def answering() -> None:
        await leaving.reserve([user], 600)
        held.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(answering())
    await held.wait()
    task.cancel()  # shutdown cancels the request...
    await leaving.stop()  # ...and the ledger gives its tokens back before exiting
    assert await used(leaving, user) == 0
    assert not await redis.sismember(f"{prefix}:quota:leases", leaving.lease_id)


async def test_the_heartbeat_keeps_a_long_answer_s_reservation(redis: Redis, prefix: str) -> None:
    user = QuotaScope("user", "u_long", 1000, "day")
    answering = ledger(redis, prefix, ttl_s=0.6)
    other = ledger(redis, prefix)
    await answering.start()
    try:
        reservation = await answering.reserve([user], 500)
        await asyncio.sleep(1.5)  # 2.5 TTLs: alive only because the heartbeat renews it
        assert await other.reclaim_expired() == 0
        assert await used(other, user) == 500
        await answering.settle(reservation, 90)
    finally:
        await answering.stop()
    assert await used(other, user) == 90
