"""Retention and erasure: what they delete, what they keep, and that the chain verifies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import text

from api.app import create_app
from api.stores.lifecycle import RetentionJob
from core.db import Database
from core.settings import Settings
from tests.fakes import TestKeys, build_services


@pytest.fixture
def api(
    settings: Settings, keys: TestKeys, database: Database
) -> Iterator[tuple[TestClient, TestKeys, Any]]:
    services = build_services(settings, keys, database)
    with TestClient(app=create_app(services)) as client:
        yield client, keys, services


def chat(client: TestClient, keys: TestKeys, who: str, content: str) -> str:
    body = {"model": "test-model", "messages": [{"role": "user", "content": content}]}
    response = client.post("/v1/chat/completions", json=body, headers=keys.header(who))
    assert response.status_code == 200, response.text
    return str(response.json()["enclave"]["conversation_id"])


async def test_retention_deletes_old_conversations_only_and_is_audited(
    api: tuple[TestClient, TestKeys, Any], database: Database
) -> None:
    client, keys, services = api
    old = chat(client, keys, "staff", "an old question about the vpn")
    recent = chat(client, keys, "staff", "a new question about printers")
    long_ago = datetime.now(UTC) - timedelta(days=400)
    async with database.transaction() as connection:
        await connection.execute(
            text("UPDATE conversations SET updated_at = :t WHERE id = :id"),
            {"t": long_ago, "id": old},
        )
    deleted = await RetentionJob(services).run_once()
    assert deleted == {"conversations": 1, "messages": 2}
    staff = keys.header("staff")
    assert client.get(f"/v1/conversations/{old}", headers=staff).status_code == 404
    assert client.get(f"/v1/conversations/{recent}", headers=staff).status_code == 200
    assert await RetentionJob(services).run_once() == {"conversations": 0, "messages": 0}
    auditor = keys.header("auditor")
    report = client.get("/v1/audit/verify", headers=auditor).json()
    assert report["ok"] is True
    async with database.reading() as connection:
        kinds = [r[0] for r in await connection.execute(text("SELECT event_type FROM audit_log"))]
    assert kinds.count("retention") == 1


async def test_erasure_removes_one_persons_data_and_keeps_a_verifiable_trail(
    api: tuple[TestClient, TestKeys, Any], database: Database
) -> None:
    client, keys, _ = api
    chat(client, keys, "staff", "my question about the vpn")
    chat(client, keys, "staff", "another one")
    kept = chat(client, keys, "tenant_admin", "an admin's own question")
    staff = keys.header("staff")
    subject = client.get("/v1/me", headers=staff).json()["subject"]
    profile = {"display_name": "Sam Example", "language": "de"}
    assert client.put("/v1/me/profile", json=profile, headers=staff).status_code == 200
    answers = client.get("/v1/conversations", headers=staff).json()["data"]
    first = client.get(f"/v1/conversations/{answers[0]['id']}", headers=staff).json()
    request_id = first["messages"][-1]["request_id"]
    rated = client.post(
        "/v1/feedback", json={"request_id": request_id, "rating": "up"}, headers=staff
    )
    assert rated.status_code == 201, rated.text
    erased = client.delete(
        f"/v1/admin/subjects/{subject}",
        params={"tenant": "default"},
        headers=keys.header("platform_admin"),
    )
    assert erased.status_code == 200, erased.text
    assert erased.json()["conversations"] == 2
    assert erased.json()["usage_counters"] >= 1  # their token-quota counters went too
    assert erased.json()["profile"] is True  # the display name went
    assert erased.json()["quality_events"] == 1
    assert client.get("/v1/me/profile", headers=staff).json()["display_name"] == ""
    usage = client.get("/v1/me/usage", headers=keys.header("staff")).json()["quotas"]
    assert next(q for q in usage if q["scope"] == "user")["used"] == 0
    assert client.get("/v1/conversations", headers=keys.header("staff")).json()["data"] == []
    admin = keys.header("tenant_admin")
    assert client.get(f"/v1/conversations/{kept}", headers=admin).status_code == 200
    async with database.reading() as connection:
        rows = (
            await connection.execute(
                text("SELECT count(*) FROM conversations WHERE user_id = :s"), {"s": subject}
            )
        ).scalar_one()
        kinds = [r[0] for r in await connection.execute(text("SELECT event_type FROM audit_log"))]
    assert rows == 0
    assert kinds.count("chat.exchange") == 3  # the tombstones stay
    assert kinds[-1] == "erasure"
    report = client.get("/v1/audit/verify", headers=keys.header("auditor")).json()
    assert report["ok"] is True
    refused = client.delete(
        f"/v1/admin/subjects/{subject}",
        params={"tenant": "default"},
        headers=keys.header("tenant_admin"),
    )
    assert refused.status_code == 403
