"""Two API processes share one token quota through the real Redis: 50 concurrent chats
against a small quota never get more than it holds, over HTTP, end to end."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from core.db import Database, database_url, upgrade
from core.settings import Settings
from serving.security import ensure_platform_admin_key

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("ENCLAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# A request reserves ~175 tokens (the repo system prompt, the question, max_tokens 20):
# room for about half of the 50, so both processes grant some.
QUOTA = 4500


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def two_api_processes(tmp_path: Path) -> Iterator[tuple[list[str], str, str]]:
    prefix = f"enclave-test-{uuid.uuid4().hex[:12]}"
    settings = Settings(paths={"data_dir": tmp_path})
    upgrade(database_url(settings))

    async def key() -> str:
        db = Database.from_settings(settings)
        try:
            issued = await ensure_platform_admin_key(settings, db)
        finally:
            await db.dispose()
        assert issued is not None
        return issued

    admin_key = asyncio.run(key())
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "QUOTA_TEST_DATA_DIR": str(tmp_path),
        "QUOTA_TEST_REDIS_URL": REDIS_URL,
        "QUOTA_TEST_PREFIX": prefix,
        "QUOTA_TEST_TOKENS": str(QUOTA),
    }
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.integration.quota_api_app", str(port)],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 60
        for url in urls:
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                for process in processes:
                    if process.poll() is not None:
                        error = process.stderr.read().decode() if process.stderr else ""
                        pytest.fail(f"an API process exited:\n{error[-3000:]}")
                assert time.monotonic() < deadline, "the API processes did not start"
                time.sleep(0.2)
        yield urls, admin_key, prefix
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        redis = Redis.from_url(REDIS_URL)
        keys = list(redis.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            redis.delete(*keys)
        redis.close()


def test_fifty_concurrent_chats_never_exceed_the_shared_quota(
    two_api_processes: tuple[list[str], str, str],
) -> None:
    urls, admin_key, _ = two_api_processes
    created = httpx.post(
        f"{urls[0]}/v1/admin/api-keys",
        json={"name": "quota test", "tenant": "default", "roles": ["staff"]},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert created.status_code == 201, created.text
    staff = {"Authorization": f"Bearer {created.json()['api_key']}"}
    body = {
        "model": "test-model",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "please answer this short question"}],
    }

    async def ask(url: str, client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"{url}/v1/chat/completions", json=body, headers=staff)

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(ask(urls[i % 2], client) for i in range(50)))

    responses = asyncio.run(storm())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    granted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert granted, "some requests must fit the quota"
    assert refused, "50 requests of ~175 tokens each cannot all fit 4500 tokens"
    # Both processes served some of the granted requests: the quota really was shared.
    assert {str(r.request.url).rsplit("/v1", 1)[0] for r in granted} == set(urls)
    used = sum(r.json()["usage"]["total_tokens"] for r in granted)
    assert used <= QUOTA
    assert all("resets at" in r.json()["detail"] for r in refused)
    # What the ledger holds after settling is exactly what was used, and within the quota.
    usage = httpx.get(f"{urls[1]}/v1/me/usage", headers=staff).json()["quotas"]
    (user,) = [q for q in usage if q["scope"] == "user"]
    assert user["used"] == used <= QUOTA
