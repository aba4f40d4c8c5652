"""Idempotent dependency calls are retried once after a pause; generation never is."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.chat.resilience import retry_idempotent
from core.db import Database
from core.errors import ServiceUnavailable
from core.settings import Settings
from models.guard_types import GuardVerdict
from tests.fakes import KeywordGuard, TestKeys, build_services

CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "vpn at the hotel?"}]}


@dataclass
class FlakyGuard(KeywordGuard):
    """Refuses the first ``failures`` classifications as a restarting replica would."""

    failures: int = 1
    calls: int = 0

    async def check(self, text: str) -> GuardVerdict:
        self.calls += 1
        if self.calls <= self.failures:
            raise ServiceUnavailable("The guard service is restarting.", retry_after=2)
        return await super().check(text)


@pytest.fixture
def flaky(
    settings: Settings, keys: TestKeys, database: Database
) -> Iterator[tuple[TestClient, FlakyGuard]]:
    guard = FlakyGuard()
    with TestClient(app=create_app(build_services(settings, keys, database, guard=guard))) as c:
        c.headers.update(keys.header("staff"))
        yield c, guard


def test_a_briefly_missing_guard_is_retried(flaky: tuple[TestClient, FlakyGuard]) -> None:
    client, guard = flaky
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert guard.calls == 2


def test_a_guard_that_stays_away_gives_a_503(flaky: tuple[TestClient, FlakyGuard]) -> None:
    client, guard = flaky
    guard.failures = 5
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert guard.calls == 2  # one retry, not a storm


async def test_only_service_unavailable_is_retried() -> None:
    calls = 0

    async def broken() -> int:
        nonlocal calls
        calls += 1
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await retry_idempotent(broken, backoff_s=0)
    assert calls == 1
