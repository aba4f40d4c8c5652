"""Token quotas in memory: reserve, settle, refuse with a reset time, alarm once per period."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from api.security import (
    MemoryQuotaLedger,
    Principal,
    QuotaAlarm,
    QuotaExceeded,
    QuotaScope,
    period_bounds,
    quota_scopes,
)
from api.security.quotas import quota_exceeded
from core.settings import LimitsSettings

START = datetime(2026, 11, 27, 20, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def user(limit: int = 1000, period: str = "day") -> QuotaScope:
    return QuotaScope("user", "u_abc", limit, period)  # type: ignore[arg-type]


def tenant(limit: int = 10_000, period: str = "month") -> QuotaScope:
    return QuotaScope("tenant", "northwind", limit, period)  # type: ignore[arg-type]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def alarms() -> list[QuotaAlarm]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(
    alarms: list[QuotaAlarm], registry: CollectorRegistry, clock: Clock
) -> MemoryQuotaLedger:
    return MemoryQuotaLedger(on_alarm=alarms.append, registry=registry, clock=clock)


def alarm_count(registry: CollectorRegistry, scope: str, level: int) -> float:
    value = registry.get_sample_value(
        "enclave_quota_alarms_total", {"scope": scope, "level": str(level)}
    )
    return value or 0.0


async def test_reserve_settle_and_refund(ledger: MemoryQuotaLedger) -> None:
    scopes = [user(), tenant()]
    reservation = await ledger.reserve(scopes, 300)
    assert [b.remaining for b in reservation.balances] == [700, 9700]
    assert (await ledger.balance(user())).used == 300
    await ledger.settle(reservation, 120)  # 180 unused tokens come back
    assert (await ledger.balance(user())).used == 120
    assert (await ledger.balance(tenant())).remaining == 9880
    failed = await ledger.reserve(scopes, 500)
    await ledger.settle(failed, 0)  # failed before generating: everything back
    balance = await ledger.balance(user())
    assert (balance.used, balance.remaining) == (120, 880)
    assert balance.resets_at == datetime(2026, 11, 28, tzinfo=UTC)


async def test_settling_twice_is_an_error(ledger: MemoryQuotaLedger) -> None:
    reservation = await ledger.reserve([user()], 10)
    await ledger.settle(reservation, 10)
    with pytest.raises(RuntimeError, match="already settled"):
        await ledger.settle(reservation, 10)


async def test_over_quota_says_when_it_resets(ledger: MemoryQuotaLedger) -> None:
    await ledger.reserve([user(), tenant()], 900)
    with pytest.raises(QuotaExceeded) as caught:
        await ledger.reserve([user(), tenant()], 200)
    error = caught.value
    assert error.status_code == 429
    assert error.retry_after == 3.5 * 3600  # 20:30 → midnight UTC
    assert error.http_headers() == {"Retry-After": "12600"}
    assert "2026-11-28 00:00 UTC" in error.detail
    assert "100 of 1000 left" in error.detail
    assert error.extra["quota_scope"] == "user"
    assert error.extra["quota_remaining"] == 100
    # Nothing was held in either scope by the refused request.
    assert (await ledger.balance(user())).used == 900
    assert (await ledger.balance(tenant())).used == 900
    # What still fits is granted.
    await ledger.reserve([user(), tenant()], 100)


async def test_tenant_refusal_holds_nothing_for_the_user(ledger: MemoryQuotaLedger) -> None:
    small_tenant = tenant(limit=500)
    await ledger.reserve([small_tenant], 450)
    with pytest.raises(QuotaExceeded) as caught:
        await ledger.reserve([user(), small_tenant], 100)
    assert "your tenant's monthly token quota" in caught.value.detail
    assert "2026-12-01 00:00 UTC" in caught.value.detail
    assert (await ledger.balance(user())).used == 0


async def test_quota_resets_with_the_period(ledger: MemoryQuotaLedger, clock: Clock) -> None:
    await ledger.reserve([user(limit=100)], 100)
    with pytest.raises(QuotaExceeded):
        await ledger.reserve([user(limit=100)], 1)
    clock.now = datetime(2026, 11, 28, 0, 0, 1, tzinfo=UTC)
    assert (await ledger.balance(user(limit=100))).used == 0
    await ledger.reserve([user(limit=100)], 100)


async def test_settling_after_the_reset_leaves_the_new_period_alone(
    ledger: MemoryQuotaLedger, clock: Clock
) -> None:
    reservation = await ledger.reserve([user()], 500)
    clock.now = datetime(2026, 11, 28, 0, 0, 1, tzinfo=UTC)
    await ledger.reserve([user()], 10)
    await ledger.settle(reservation, 600)
    assert (await ledger.balance(user())).used == 10


async def test_alarms_fire_once_per_level_and_period(
    ledger: MemoryQuotaLedger,
    alarms: list[QuotaAlarm],
    registry: CollectorRegistry,
    clock: Clock,
) -> None:
    scope = user(limit=100)
    await ledger.reserve([scope], 49)
    assert alarms == []
    await ledger.reserve([scope], 1)  # 50 %
    assert [(a.scope.kind, a.level, a.used) for a in alarms] == [("user", 50, 50)]
    await ledger.reserve([scope], 10)  # 60 %: nothing new
    second = await ledger.reserve([scope], 25)  # 85 %
    assert [a.level for a in alarms] == [50, 80]
    await ledger.settle(second, 0)  # back to 60 % ...
    await ledger.reserve([scope], 25)  # ... and 85 % again: no repeat
    assert [a.level for a in alarms] == [50, 80]
    await ledger.reserve([scope], 15)  # 100 %
    assert [a.level for a in alarms] == [50, 80, 100]
    with pytest.raises(QuotaExceeded):
        await ledger.reserve([scope], 1)
    assert [a.level for a in alarms] == [50, 80, 100]
    assert alarm_count(registry, "user", 50) == 1
    assert alarm_count(registry, "user", 100) == 1
    assert alarms[-1].resets_at == datetime(2026, 11, 28, tzinfo=UTC)
    # A new period may alarm again.
    clock.now += timedelta(days=1)
    await ledger.reserve([scope], 80)
    assert [a.level for a in alarms] == [50, 80, 100, 50, 80]
    assert alarm_count(registry, "user", 80) == 2


async def test_a_refusal_raises_the_full_alarm(
    ledger: MemoryQuotaLedger, alarms: list[QuotaAlarm], registry: CollectorRegistry
) -> None:
    await ledger.reserve([tenant(limit=1000)], 400)
    with pytest.raises(QuotaExceeded):
        await ledger.reserve([user(), tenant(limit=1000)], 700)
    # Only the refusing scope: the user's demand (70 %) was never committed.
    assert [(a.scope.kind, a.level) for a in alarms] == [
        ("tenant", 50),
        ("tenant", 80),
        ("tenant", 100),
    ]
    assert alarm_count(registry, "tenant", 100) == 1
    assert alarm_count(registry, "user", 50) == 0


async def test_usage_beyond_the_reservation_is_counted_and_alarms(
    ledger: MemoryQuotaLedger, alarms: list[QuotaAlarm]
) -> None:
    reservation = await ledger.reserve([user(limit=100)], 10)
    await ledger.settle(reservation, 90)
    assert (await ledger.balance(user(limit=100))).used == 90
    assert [a.level for a in alarms] == [50, 80]


async def test_async_and_failing_callbacks(
    registry: CollectorRegistry, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    delivered: list[int] = []

    async def webhook(alarm: QuotaAlarm) -> None:
        await asyncio.sleep(0)
        delivered.append(alarm.level)
        raise ConnectionError("webhook down")

    ledger = MemoryQuotaLedger(on_alarm=webhook, registry=registry, clock=clock)
    await ledger.reserve([user(limit=10)], 9)  # the request goes through regardless
    assert delivered == [50, 80]
    assert "quota alarm delivery failed" in caplog.text


async def test_fifty_concurrent_reservations_never_exceed_the_quota(
    registry: CollectorRegistry, clock: Clock
) -> None:
    async def slow_sink(alarm: QuotaAlarm) -> None:
        await asyncio.sleep(0.001)

    ledger = MemoryQuotaLedger(on_alarm=slow_sink, registry=registry, clock=clock)
    scopes = [user(limit=1000), tenant(limit=1000)]
    release, all_decided = asyncio.Event(), asyncio.Event()
    decided = 0

    def decide() -> None:
        nonlocal decided
        decided += 1
        if decided == 50:
            all_decided.set()

    async def request() -> int:
        await asyncio.sleep(0)
        try:
            reservation = await ledger.reserve(scopes, 64)
        except QuotaExceeded:
            decide()
            return 0
        decide()
        await release.wait()  # a request holds its reservation while it answers
        await ledger.settle(reservation, 64)
        return reservation.tokens

    tasks = [asyncio.ensure_future(request()) for _ in range(50)]
    await all_decided.wait()
    # All 50 decided while every granted one still holds its tokens.
    assert (await ledger.balance(scopes[0])).used == 15 * 64  # 960: a 16th would make 1024
    release.set()
    granted = await asyncio.gather(*tasks)
    assert sum(granted) == 15 * 64
    assert (await ledger.balance(scopes[0])).used == sum(granted)
    assert (await ledger.balance(scopes[1])).used == sum(granted)


async def test_negative_tokens_are_refused(ledger: MemoryQuotaLedger) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        await ledger.reserve([user()], -1)


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        (
            "hour",
            datetime(2026, 11, 27, 20, 30, 5),
            datetime(2026, 11, 27, 20),
            datetime(2026, 11, 27, 21),
        ),
        ("day", datetime(2026, 12, 31, 23, 59), datetime(2026, 12, 31), datetime(2027, 1, 1)),
        ("month", datetime(2026, 11, 27, 20), datetime(2026, 11, 1), datetime(2026, 12, 1)),
        ("month", datetime(2026, 12, 15), datetime(2026, 12, 1), datetime(2027, 1, 1)),
    ],
)
def test_period_bounds_are_utc_calendar_periods(
    period: str, now: datetime, start: datetime, end: datetime
) -> None:
    bounds = period_bounds(period, now.replace(tzinfo=UTC))  # type: ignore[arg-type]
    assert bounds == (start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))


def test_period_bounds_convert_other_time_zones() -> None:
    berlin = datetime(2026, 11, 28, 0, 30, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Berlin")
    )
    assert period_bounds("day", berlin)[0] == datetime(2026, 11, 28, tzinfo=UTC)


def test_quota_scopes_follow_the_settings() -> None:
    principal = Principal("u_abc", "northwind", frozenset({"staff"}), "oidc")
    limits = LimitsSettings(
        user_tokens={"tokens": 1000, "period": "hour"}, tenant_tokens={"tokens": None}
    )
    assert quota_scopes(principal, limits) == (QuotaScope("user", "u_abc", 1000, "hour"),)
    both = quota_scopes(principal, LimitsSettings())
    assert [(s.kind, s.id) for s in both] == [("user", "u_abc"), ("tenant", "northwind")]


def test_limits_settings_validation() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="redis_url is required"):
        LimitsSettings(store="redis")
    with pytest.raises(ValidationError, match="password"):
        LimitsSettings(store="redis", redis_url="redis://:hunter2@redis:6379/0")
    with pytest.raises(ValidationError, match="alarm_levels"):
        LimitsSettings(alarm_levels=[50, 150])
    assert LimitsSettings(alarm_levels=[100, 50]).alarm_levels == [50, 100]


def test_the_refusal_names_the_period_in_plain_words() -> None:
    now = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    for period, word in (("hour", "hourly"), ("day", "daily"), ("month", "monthly")):
        scope = QuotaScope("user", "u_1", 10, period)
        error = quota_exceeded([(scope, 10, now + timedelta(hours=1))], 5, now)
        assert f"your {word} token quota has 0 of 10 left" in error.detail
