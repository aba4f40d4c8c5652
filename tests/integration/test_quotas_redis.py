"""Quotas and rate limits in real Redis, shared by several OS processes.

Uses ``ENCLAVE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); every key carries a
prefix unique to the run, and only those keys are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from litestar.stores.redis import RedisStore
from prometheus_client import CollectorRegistry
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from api.security import (
    Principal,
    QuotaAlarm,
    QuotaExceeded,
    QuotaScope,
    RateLimited,
    RateLimiter,
    RedisQuotaLedger,
    StoreOutage,
)
from core.errors import ServiceUnavailable
from tests.integration.conftest import REDIS_URL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from prometheus_client import CollectorRegistry
    from redis.asyncio import Redis
    from litestar.stores.redis import RedisStore
    from api.security import (
        Principal, QuotaExceeded, QuotaScope, RateLimiter, RedisQuotaLedger,
    )

    url, prefix, mode, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    async def main() -> None:
        redis = Redis.from_url(url)
        registry = CollectorRegistry()
        alarms = []
        ledger = RedisQuotaLedger(
            redis, key_prefix=prefix, registry=registry,
            on_alarm=lambda a: alarms.append([a.scope.kind, a.level]),
        )
        store = RedisStore(redis, namespace=prefix)
        rates = RateLimiter(store, user_per_minute=1000, tenant_per_minute=20)
        scopes = [QuotaScope("user", "u_shared", 1000, "day"),
                  QuotaScope("tenant", "t_shared", 1000, "month")]
        principal = Principal("u_shared", "t_shared", frozenset({"staff"}), "api_key")
        # Start together: wait for the parent's go signal.
        while not await redis.exists(prefix + ":go"):
            await asyncio.sleep(0.005)

        async def one() -> int:
            if mode == "quota":
                try:
                    reservation = await ledger.reserve(scopes, 64)
                except QuotaExceeded:
                    return 0
                # Settled as a request does (an unsettled one is released when its
                # task ends: the request-task lease).
                await ledger.settle(reservation, reservation.tokens)
                return reservation.tokens
            return int((await rates.hit(principal)).allowed)

        results = await asyncio.gather(*(one() for _ in range(count)))
        counted = {
            f"{s.labels['scope']}:{s.labels['level']}": s.value
            for metric in registry.collect() for s in metric.samples
            if s.name == "enclave_quota_alarms_total"
        }
        print(json.dumps({"results": results, "alarms": alarms, "counted": counted}))
        await redis.aclose()

    asyncio.run(main())
    """
)


def run_workers(tmp_path: Path, prefix: str, mode: str, per_process: int) -> list[dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), REDIS_URL, prefix, mode, str(per_process)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    client = SyncRedis.from_url(REDIS_URL)
    try:
        client.set(f"{prefix}:go", "1", ex=120)
    finally:
        client.close()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs


def test_two_processes_never_exceed_the_quota_and_alarm_once(tmp_path: Path, prefix: str) -> None:
    outputs = run_workers(tmp_path, prefix, "quota", 25)
    granted = [tokens for out in outputs for tokens in out["results"]]
    assert len(granted) == 50
    assert sum(granted) == 15 * 64  # 960 of 1000: a 16th reservation would exceed it
    alarms = sorted(tuple(alarm) for out in outputs for alarm in out["alarms"])
    assert alarms == [(kind, level) for kind in ("tenant", "user") for level in (50, 80, 100)]
    counted: dict[str, float] = {}
    for out in outputs:
        for key, value in out["counted"].items():
            counted[key] = counted.get(key, 0) + value
    assert counted == {f"{k}:{lvl}": 1.0 for k in ("user", "tenant") for lvl in (50, 80, 100)}
    client = SyncRedis.from_url(REDIS_URL)
    try:
        day = datetime.now(UTC).strftime("%Y%m%d")
        assert int(client.get(f"{prefix}:quota:user:u_shared:day:{day}") or 0) == 960
    finally:
        client.close()


def test_two_processes_share_the_rate_limit(tmp_path: Path, prefix: str) -> None:
    outputs = run_workers(tmp_path, prefix, "rate", 25)
    admitted = sum(sum(out["results"]) for out in outputs)
    # 20 per tenant per minute (unless the run straddles a minute boundary: then ≤ 40).
    assert admitted == 20 or 20 < admitted <= 40


async def test_reserve_settle_balance_in_redis(redis: Redis, prefix: str) -> None:
    alarms: list[QuotaAlarm] = []
    ledger = RedisQuotaLedger(
        redis, key_prefix=prefix, registry=CollectorRegistry(), on_alarm=alarms.append
    )
    user = QuotaScope("user", "u_1", 100, "hour")
    tenant = QuotaScope("tenant", "t_1", 1000, "day")
    reservation = await ledger.reserve([user, tenant], 60)
    assert [b.remaining for b in reservation.balances] == [40, 940]
    assert [(a.scope.kind, a.level, a.used) for a in alarms] == [("user", 50, 60)]
    await ledger.settle(reservation, 20)
    assert (await ledger.balance(user)).used == 20
    assert (await ledger.balance(tenant)).used == 20
    overage = await ledger.reserve([user], 10)
    await ledger.settle(overage, 65)  # more than reserved: counted, and it alarms
    assert (await ledger.balance(user)).used == 85
    assert [a.level for a in alarms] == [50, 80]
    assert alarms[-1].used == 85
    with pytest.raises(QuotaExceeded) as caught:
        await ledger.reserve([user, tenant], 20)
    assert caught.value.extra["quota_scope"] == "user"
    assert "UTC" in caught.value.detail
    assert (await ledger.balance(tenant)).used == 20  # the refusal held nothing
    assert [a.level for a in alarms] == [50, 80, 100]  # a refusal reaches 100 %
    # Keys expire at the end of the period.
    key = f"{prefix}:quota:user:u_1:hour:{datetime.now(UTC):%Y%m%dT%H}"
    ttl = await redis.ttl(key)
    end = (await ledger.balance(user)).resets_at
    assert abs(ttl - (end - datetime.now(UTC)).total_seconds()) <= 2
    assert await redis.ttl(f"{key}:alarm:50") == pytest.approx(ttl, abs=2)


async def test_settle_after_the_period_is_a_no_op(redis: Redis, prefix: str) -> None:
    ledger = RedisQuotaLedger(redis, key_prefix=prefix, registry=CollectorRegistry())
    scope = QuotaScope("user", "u_2", 100, "day")
    reservation = await ledger.reserve([scope], 30)
    day = datetime.now(UTC).strftime("%Y%m%d")
    await redis.delete(f"{prefix}:quota:user:u_2:day:{day}")  # as if the period had ended
    await ledger.settle(reservation, 10)
    assert await redis.exists(f"{prefix}:quota:user:u_2:day:{day}") == 0


async def test_rate_limiter_over_a_redis_store(redis: Redis, prefix: str) -> None:
    store = RedisStore(redis, namespace=prefix)
    clock_now = 1_800_000_015.0
    rates = RateLimiter(store, user_per_minute=3, tenant_per_minute=10, clock=lambda: clock_now)
    alice = Principal("u_alice", "acme", frozenset({"staff"}), "oidc")
    for _ in range(3):
        await rates.enforce(alice)
    with pytest.raises(RateLimited) as caught:
        await rates.enforce(alice)
    assert caught.value.retry_after == 45
    # Keys live in the store's namespace, under this test's prefix.
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:rate:*")]
    assert len(keys) == 2


async def test_an_unreachable_redis_is_a_503_not_a_500() -> None:
    # Port 1 on loopback: connection refused at once.
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        ledger = RedisQuotaLedger(dead, key_prefix="unused", registry=CollectorRegistry())
        scope = QuotaScope("user", "u", 10, "day")
        with pytest.raises(ServiceUnavailable, match="quota store is unavailable") as caught:
            await ledger.reserve([scope], 1)
        assert caught.value.retry_after == 5
        with pytest.raises(ServiceUnavailable):
            await ledger.balance(scope)
        rates = RateLimiter(RedisStore(dead), user_per_minute=1, tenant_per_minute=1)
        with pytest.raises(ServiceUnavailable, match="rate-limit store"):
            await rates.hit(Principal("u", "t", frozenset(), "oidc"))
    finally:
        await dead.aclose()


async def test_fail_open_admits_unmetered_and_counts_the_outage() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    registry = CollectorRegistry()
    outage = StoreOutage("fail_open", registry)
    try:
        ledger = RedisQuotaLedger(
            dead, key_prefix="unused", registry=CollectorRegistry(), outage=outage
        )
        scope = QuotaScope("user", "u", 10, "day")
        unmetered = await ledger.reserve([scope], 1_000)  # over the quota, yet admitted
        assert (unmetered.scopes, unmetered.tokens, unmetered.balances) == ((), 0, ())
        await ledger.settle(unmetered, 900)  # nothing to settle
        with pytest.raises(ServiceUnavailable):  # no balance to report without the store
            await ledger.balance(scope)
        rates = RateLimiter(RedisStore(dead), user_per_minute=1, tenant_per_minute=1, outage=outage)
        decision = await rates.enforce(Principal("u", "t", frozenset(), "oidc"))
        assert decision.allowed
        assert decision.headers() == {}  # no budget claimed that nobody counted
    finally:
        await dead.aclose()

    def count(store: str) -> float | None:
        return registry.get_sample_value(
            "enclave_limits_store_unavailable_total", {"store": store, "policy": "fail_open"}
        )

    assert (count("quota"), count("rate_limit")) == (2.0, 1.0)  # reserve and balance; hit
