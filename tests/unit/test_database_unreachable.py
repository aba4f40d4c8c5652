"""A PostgreSQL server that is down (restarting, stopped) is a store error like any other:
a retryable 503 with ``Retry-After``, never a 500 from a raw ``ConnectionRefusedError``."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest
from litestar.testing import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from api.app import create_app
from api.security import Authenticator, issue_api_key
from api.security.key_store import SqlApiKeyStore
from core.db import Database
from core.settings import Settings
from tests.fakes import TestKeys, build_services


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _down_server() -> Database:
    return Database.from_url(
        f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/enclave", connect_timeout_s=2
    )


async def test_a_refused_postgresql_connection_is_a_sqlalchemy_store_error() -> None:
    database = _down_server()
    try:
        with pytest.raises(OperationalError) as caught:
            async with database.reading() as connection:
                await connection.execute(text("SELECT 1"))
        assert isinstance(caught.value.orig.__cause__, ConnectionRefusedError)
        assert "cannot connect to the database" in str(caught.value)
    finally:
        await database.dispose()


def test_a_login_while_postgresql_is_down_is_a_503_with_retry_after(
    settings: Settings, keys: TestKeys, database: Database
) -> None:
    # API keys live in PostgreSQL in production: every login reads one.
    down = _down_server()
    security = keys.security(settings)
    store = SqlApiKeyStore(down)
    security = replace(
        security, authenticator=Authenticator(oidc=None, api_keys=store), api_keys=store
    )
    services = build_services(settings, keys, database, security=security)
    key = issue_api_key(tenant="default", roles=("staff",), name="someone").plaintext
    with TestClient(app=create_app(services)) as client:
        response = client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    problem = response.json()
    assert problem["type"].endswith("database-unavailable")
    assert problem["request_id"] == response.headers["x-request-id"]
