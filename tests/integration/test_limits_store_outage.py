"""Redis goes away under a running API process: rate limits and quotas follow
``limits.on_store_unavailable``, say so in a metric, and recover when Redis is back.

The Redis here is a second ``redis-server`` this test starts on a free port and stops (the
machine's own Redis is never touched); the API is a real process over HTTP.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import RedisError

from core.settings import StoreOutagePolicy
from tests.integration.api_processes import api_processes, chat_body, free_port

pytestmark = pytest.mark.integration


class SpareRedis:
    """A throwaway redis-server on a free port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if Redis.from_url(self.url, socket_connect_timeout=0.5).ping():
                    return
            except RedisError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None


@pytest.fixture
def spare_redis() -> Iterator[SpareRedis]:
    redis = SpareRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def outage_count(url: str, store: str, policy: str) -> float:
    scraped = httpx.get(f"{url}/metrics", timeout=30).text
    line = f'enclave_limits_store_unavailable_total{{policy="{policy}",store="{store}"}}'
    (sample,) = [row for row in scraped.splitlines() if row.startswith(line)]
    return float(sample.split()[-1])


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
def test_redis_outage_follows_the_configured_policy_and_is_counted(
    tmp_path: Path, spare_redis: SpareRedis, policy: StoreOutagePolicy
) -> None:
    env = {"QUOTA_TEST_ON_STORE_UNAVAILABLE": policy, "QUOTA_TEST_REQUESTS_PER_MINUTE": "100"}
    with api_processes(tmp_path, 1, tokens=10_000, redis_url=spare_redis.url, env=env) as api:
        api.open_gate()
        (url,) = api.urls
        staff = api.staff_key()
        chat = f"{url}/v1/chat/completions"
        metered = httpx.post(chat, json=chat_body(), headers=staff, timeout=30)
        assert metered.status_code == 200, metered.text
        assert "X-Quota-Remaining-Tokens" in metered.headers
        assert "RateLimit-Remaining" in metered.headers
        assert outage_count(url, "rate_limit", policy) == 0

        spare_redis.stop()
        started = time.monotonic()
        during = httpx.post(chat, json=chat_body(), headers=staff, timeout=30)
        answered_in = time.monotonic() - started
        assert answered_in < 5, f"the outage held the request {answered_in:.1f} s"
        if policy == "fail_closed":
            assert during.status_code == 503, during.text
            assert during.headers["Retry-After"] == "5"
            problem = during.json()
            assert "store is unavailable" in problem["detail"]
            assert problem["request_id"]
        else:
            # Served, unmetered: no quota or rate headers claim a budget nobody counted.
            assert during.status_code == 200, during.text
            assert during.json()["choices"][0]["message"]["content"]
            assert "X-Quota-Remaining-Tokens" not in during.headers
            assert "RateLimit-Remaining" not in during.headers
            assert outage_count(url, "quota", policy) >= 1
        assert outage_count(url, "rate_limit", policy) >= 1
        # A balance cannot be read without the store, whatever the policy.
        assert httpx.get(f"{url}/v1/me/usage", headers=staff, timeout=30).status_code == 503

        spare_redis.start()  # same port, empty: counting starts again
        deadline = time.monotonic() + 20
        while True:
            back = httpx.post(chat, json=chat_body(), headers=staff, timeout=30)
            if back.status_code == 200 and "X-Quota-Remaining-Tokens" in back.headers:
                break
            assert time.monotonic() < deadline, (back.status_code, back.text[:300])
            time.sleep(0.2)
