"""Request rate limits per user and per tenant over Litestar's MemoryStore."""

from __future__ import annotations

import asyncio

import pytest
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore

from api.security import Principal, RateLimited, RateLimiter, build_limits_store
from core.settings import LimitsSettings

T0 = 1_800_000_000.0  # a window boundary (divisible by 60)


class Clock:
    def __init__(self) -> None:
        self.now = T0 + 15

    def __call__(self) -> float:
        return self.now


def principal(subject: str = "u_alice", tenant: str = "northwind") -> Principal:
    return Principal(subject, tenant, frozenset({"staff"}), "oidc")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limiter(clock: Clock, user: int | None = 3, tenant: int | None = 5) -> RateLimiter:
    return RateLimiter(MemoryStore(), user_per_minute=user, tenant_per_minute=tenant, clock=clock)


async def test_user_limit_then_retry_after(clock: Clock) -> None:
    rates = limiter(clock)
    decisions = [await rates.hit(principal()) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert decisions[0].headers() == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "2",
        "RateLimit-Reset": "45",
    }
    with pytest.raises(RateLimited) as caught:
        await rates.enforce(principal())
    error = caught.value
    assert error.status_code == 429
    assert error.retry_after == 45
    assert error.http_headers() == {"Retry-After": "45"}
    assert "you may make 3 per minute" in error.detail
    # The next window admits again.
    clock.now = T0 + 60
    assert (await rates.enforce(principal())).allowed


async def test_tenant_limit_covers_all_its_users(clock: Clock) -> None:
    rates = limiter(clock, user=3, tenant=5)
    for name in ("a", "b"):
        for _ in range(2):
            await rates.enforce(principal(f"u_{name}"))
    await rates.enforce(principal("u_c"))
    decision = await rates.hit(principal("u_d"))
    assert not decision.allowed
    assert decision.scope == "tenant"
    with pytest.raises(RateLimited, match="your tenant may make 5 per minute"):
        await rates.enforce(principal("u_e"))
    # Another tenant is not affected.
    assert (await rates.hit(principal("u_x", tenant="contoso"))).allowed


async def test_refused_requests_do_not_count(clock: Clock) -> None:
    rates = limiter(clock, user=2, tenant=100)
    for _ in range(2):
        await rates.enforce(principal())
    for _ in range(10):
        assert not (await rates.hit(principal())).allowed
    # The tenant counted only the two admitted requests.
    other = await rates.hit(principal("u_bob"))
    assert other.allowed
    assert other.scope == "user"  # the tighter remaining budget is the user's (1 of 2)
    assert other.remaining == 1


async def test_a_user_refused_holds_no_tenant_budget(clock: Clock) -> None:
    rates = limiter(clock, user=1, tenant=2)
    await rates.enforce(principal("u_a"))
    for _ in range(5):
        assert not (await rates.hit(principal("u_a"))).allowed
    await rates.enforce(principal("u_b"))  # the tenant's second request


async def test_unlimited_scopes(clock: Clock) -> None:
    rates = limiter(clock, user=None, tenant=None)
    for _ in range(100):
        decision = await rates.enforce(principal())
    assert decision.headers() == {}
    only_tenant = limiter(clock, user=None, tenant=2)
    await only_tenant.enforce(principal("u_a"))
    await only_tenant.enforce(principal("u_b"))
    with pytest.raises(RateLimited):
        await only_tenant.enforce(principal("u_c"))


async def test_concurrent_requests_never_exceed_the_limit(clock: Clock) -> None:
    rates = limiter(clock, user=10, tenant=1000)
    decisions = await asyncio.gather(*(rates.hit(principal()) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10


def test_store_from_settings() -> None:
    assert isinstance(build_limits_store(LimitsSettings()), MemoryStore)
    settings = LimitsSettings(store="redis", redis_url="redis://127.0.0.1:6379/0")
    store = build_limits_store(settings)
    assert isinstance(store, RedisStore)
    assert store.namespace == "enclave"
