"""Unit-test fixtures: the API over scripted models, no model loads."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.app import create_app
from api.services import Security
from core.db import Database, upgrade
from core.settings import Settings, TelemetrySettings
from core.tracing import configure_tracing
from tests.fakes import FakeKnowledge, KeywordGuard, ScriptedLLM, TestKeys, build_services

# The first line of the repo's chat prompt (prompts/chat/system.j2), rendered.
SYSTEM_PROMPT_START = "You are the Northwind Analytics staff assistant"
CANARY = "NWC-test0canary00"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        paths={"data_dir": tmp_path},
        api={
            "max_body_bytes": 4096,
            "max_messages": 8,
            "max_message_chars": 600,
            "max_completion_tokens": 64,
        },
        llm={
            "primary": {
                "served_name": "test-model",
                "max_model_len": 256,
                "decoding": {"repetition_penalty": 1.15, "frequency_penalty": 0.2},
            },
            "fallback": {
                "served_name": "test-model",
                "max_model_len": 256,
                "engine": "transformers",
                "decoding": {"presence_penalty": 0.4},
            },
            "default_max_tokens": 32,
        },
        limits={"user_requests_per_minute": 10_000, "tenant_requests_per_minute": 100_000},
    )


@pytest.fixture
async def keys() -> TestKeys:
    return await TestKeys.issue()


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the current schema, migrated once; tests get a copy each."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def database(tmp_path: Path, migrated_db: Path) -> Database:
    path = tmp_path / "enclave.db"
    shutil.copyfile(migrated_db, path)
    return Database.from_url(f"sqlite+aiosqlite:///{path}")


@pytest.fixture
def security(keys: TestKeys, settings: Settings) -> Security:
    return keys.security(settings)


@pytest.fixture
def primary() -> ScriptedLLM:
    return ScriptedLLM()


@pytest.fixture
def fallback() -> ScriptedLLM:
    return ScriptedLLM(reply="Fallback answer here", engine="scripted-fallback")


@pytest.fixture
def guard() -> KeywordGuard:
    return KeywordGuard()


@pytest.fixture
def knowledge() -> FakeKnowledge:
    return FakeKnowledge()


@pytest.fixture
def client(
    settings: Settings,
    primary: ScriptedLLM,
    fallback: ScriptedLLM,
    guard: KeywordGuard,
    knowledge: FakeKnowledge,
    security: Security,
    keys: TestKeys,
    database: Database,
) -> Iterator[TestClient]:
    services = build_services(
        settings,
        keys,
        database,
        primary=primary,
        fallback=fallback,
        guard=guard,
        canary_token=CANARY,
        security=security,
        knowledge=knowledge,
    )
    with TestClient(app=create_app(services)) as test_client:
        test_client.headers.update(keys.header("staff"))
        yield test_client


@pytest.fixture(scope="session", autouse=True)
def _tracing() -> None:
    """A tracer provider for the process, as every Enclave process has (nothing exported)."""
    configure_tracing(TelemetrySettings())


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """Spans of a test's own tracer provider (the process-wide one exports nothing)."""
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = configure_tracing(TelemetrySettings(), exporter=exporter, install=False)
    yield provider
    provider.shutdown()
