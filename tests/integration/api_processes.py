"""Real API processes (``tests.integration.quota_api_app``) over one Redis, for the quota and
limits-store tests: start them, talk to them, clean up their keys."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis import Redis

from core.db import Database, database_url, upgrade
from core.settings import Settings
from serving.security import ensure_platform_admin_key
from tests.integration.quota_api_app import GATE_OPEN

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("ENCLAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MAX_TOKENS = 20


@dataclass(frozen=True)
class ApiProcesses:
    """Running API processes over one Redis ledger: their URLs and ports, the admin key, the
    key prefix, the gate folder (``quota_api_app``) and the processes themselves."""

    urls: list[str]
    ports: list[int]
    admin_key: str
    prefix: str
    gate: Path
    processes: list[subprocess.Popen[bytes]]

    def arrivals(self, index: int | None = None) -> int:
        """Chats that reached the model (their reservation held) and wait at the gate: at
        process ``index``, or at all of them."""
        pattern = "arrived-*" if index is None else f"arrived-{self.ports[index]}-*"
        return len(list(self.gate.glob(pattern)))

    def open_gate(self, index: int | None = None) -> None:
        """Let the answers through: at process ``index``, or everywhere."""
        name = GATE_OPEN if index is None else f"{GATE_OPEN}-{self.ports[index]}"
        (self.gate / name).touch()

    def staff_key(self) -> dict[str, str]:
        """A new staff API key's Authorization header (one user: one quota)."""
        created = httpx.post(
            f"{self.urls[0]}/v1/admin/api-keys",
            json={"name": "quota test", "tenant": "default", "roles": ["staff"]},
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        return {"Authorization": f"Bearer {created.json()['api_key']}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def chat_body(max_tokens: int = MAX_TOKENS) -> dict[str, object]:
    return {
        "model": "test-model",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "please answer this short question"}],
    }


def user_used(url: str, headers: Mapping[str, str]) -> int:
    """The user's committed tokens, as ``GET /v1/me/usage`` reports them."""
    response = httpx.get(f"{url}/v1/me/usage", headers=dict(headers), timeout=30)
    assert response.status_code == 200, response.text
    (user,) = [q for q in response.json()["quotas"] if q["scope"] == "user"]
    return int(user["used"])


def _wait_until_healthy(urls: list[str], processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 90
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


@contextmanager
def api_processes(
    tmp_path: Path,
    count: int,
    *,
    tokens: int,
    redis_url: str = REDIS_URL,
    env: Mapping[str, str] | None = None,
) -> Iterator[ApiProcesses]:
    """``count`` API processes sharing ``redis_url`` and one SQLite database, a user quota of
    ``tokens`` a day; their Redis keys are deleted afterwards."""
    prefix = f"enclave-test-{uuid.uuid4().hex[:12]}"
    data_dir = tmp_path / "data"
    gate = tmp_path / "gate"
    gate.mkdir()
    settings = Settings(paths={"data_dir": data_dir})
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
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "QUOTA_TEST_DATA_DIR": str(data_dir),
        "QUOTA_TEST_REDIS_URL": redis_url,
        "QUOTA_TEST_PREFIX": prefix,
        "QUOTA_TEST_TOKENS": str(tokens),
        "QUOTA_TEST_GATE_DIR": str(gate),
        **(env or {}),
    }
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.integration.quota_api_app", str(port)],
            cwd=ROOT,
            env=environment,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        _wait_until_healthy(urls, processes)
        yield ApiProcesses(urls, ports, admin_key, prefix, gate, processes)
    finally:
        (gate / GATE_OPEN).touch()  # nothing waits forever at shutdown
        for process in processes:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=15)
        if redis_url == REDIS_URL:  # a test's own Redis goes away with its keys
            redis = Redis.from_url(REDIS_URL)
            keys = list(redis.scan_iter(match=f"{prefix}*", count=500))
            if keys:
                redis.delete(*keys)
            redis.close()
