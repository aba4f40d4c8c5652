"""Integration fixtures: the real model store, prepared by `make models`."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from core.settings import Settings
from models.store import ModelStore

REDIS_URL = os.environ.get("ENCLAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def llm_dir(test_settings: Settings, offline_env: dict[str, str]) -> Path:
    """The verified SmolLM2 folder from the model store."""
    store = ModelStore(test_settings.paths.model_store)
    name = test_settings.llm.primary.store_name
    return store.verify([name])[name].folder(store.root)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    prefix = f"enclave-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = SyncRedis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """An asyncio client of the test Redis (ENCLAVE_TEST_REDIS_URL)."""
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()
