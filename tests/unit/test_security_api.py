"""Security through the API: keys issued once and revoked, rate limits, token quotas,
security headers, CORS, and the attack cases of issue 5."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from core.db import Database
from core.settings import Settings, TokenQuotaSettings
from tests.fakes import ScriptedLLM, TestKeys, build_services

CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "vpn at the hotel?"}]}


def build(
    settings: Settings, keys: TestKeys, database: Database, primary: ScriptedLLM | None = None
) -> TestClient:
    services = build_services(settings, keys, database, primary=primary or ScriptedLLM())
    return TestClient(app=create_app(services))


def tuned(settings: Settings, **limits: Any) -> Settings:
    return settings.model_copy(update={"limits": settings.limits.model_copy(update=limits)})


@pytest.fixture
def api(settings: Settings, keys: TestKeys, database: Database) -> Iterator[TestClient]:
    with build(settings, keys, database) as client:
        yield client


def test_an_issued_key_is_shown_once_works_and_can_be_revoked(
    api: TestClient, keys: TestKeys
) -> None:
    admin = keys.header("platform_admin")
    created = api.post(
        "/v1/admin/api-keys",
        json={"name": "canary", "tenant": "default", "roles": ["staff"]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    plaintext = created.json()["api_key"]
    key_id = created.json()["key_id"]
    assert plaintext.startswith(f"enc_{key_id}.")
    listed = api.get("/v1/admin/api-keys", headers=admin).text
    assert key_id in listed
    assert plaintext not in listed
    assert plaintext.split(".")[1] not in listed
    assert "hash" not in listed
    own = {"Authorization": f"Bearer {plaintext}"}
    assert api.get("/v1/me", headers=own).json()["roles"] == ["staff"]
    assert api.post("/v1/chat/completions", json=CHAT, headers=own).status_code == 200
    assert api.delete(f"/v1/admin/api-keys/{key_id}", headers=admin).status_code == 204
    refused = api.get("/v1/me", headers=own)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    missing = api.delete("/v1/admin/api-keys/0000000000000000", headers=admin)
    assert missing.status_code == 404


def test_key_requests_are_validated(api: TestClient, keys: TestKeys) -> None:
    admin = keys.header("platform_admin")
    bad = api.post(
        "/v1/admin/api-keys",
        json={"name": " ", "tenant": "a b", "roles": [], "expires_at": "2020-01-01T00:00:00Z"},
        headers=admin,
    )
    assert bad.status_code == 400
    detail = bad.json()["detail"]
    for field in ("name", "tenant", "roles", "expires_at"):
        assert field in detail
    escalation = api.post(
        "/v1/admin/api-keys",
        json={"name": "x", "tenant": "default", "roles": ["superuser"]},
        headers=admin,
    )
    assert escalation.status_code == 400


def test_staff_cannot_mint_keys_or_escalate(api: TestClient, keys: TestKeys) -> None:
    for who in ("staff", "tenant_admin", "auditor"):
        response = api.post(
            "/v1/admin/api-keys",
            json={"name": "mine", "tenant": "default", "roles": ["platform_admin"]},
            headers=keys.header(who),
        )
        assert response.status_code == 403
        assert "platform_admin" in response.json()["detail"]


def test_malformed_credentials_are_refused_without_echo(api: TestClient) -> None:
    for value in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer enc_nothex.secret", "Bearer ey.x.y"):
        response = api.get("/v1/me", headers={"Authorization": value})
        assert response.status_code == 401, value
        assert value.split(" ", 1)[-1] not in response.json()["detail"] or value == "Bearer"


def test_request_rate_limit_per_user_and_tenant(
    settings: Settings, keys: TestKeys, database: Database
) -> None:
    limited = tuned(settings, user_requests_per_minute=2, tenant_requests_per_minute=3)
    with build(limited, keys, database) as client:
        staff, admin = keys.header("staff"), keys.header("tenant_admin")
        first = client.get("/v1/me", headers=staff)
        assert first.headers["ratelimit-limit"] == "2"
        assert first.headers["ratelimit-remaining"] == "1"
        assert client.get("/v1/me", headers=staff).status_code == 200
        third = client.get("/v1/me", headers=staff)
        assert third.status_code == 429
        assert 1 <= int(third.headers["retry-after"]) <= 60
        assert third.json()["request_id"]
        # Another user of the tenant still has room, until the tenant's 3 are spent.
        assert client.get("/v1/me", headers=admin).status_code == 200
        assert client.get("/v1/me", headers=admin).status_code == 429
        # Another tenant is untouched; probes are never limited.
        assert client.get("/v1/me", headers=keys.header("foreign_staff")).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_token_quota_reserves_settles_and_refuses_with_the_reset_time(
    settings: Settings, keys: TestKeys, database: Database
) -> None:
    # The repo's system prompt alone is ~150 tokens: room for one answer, not two.
    small = tuned(settings, user_tokens=TokenQuotaSettings(tokens=200, period="day"))
    primary = ScriptedLLM(reply="one two three")
    with build(small, keys, database, primary) as client:
        staff = keys.header("staff")
        answer = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 10}, headers=staff)
        assert answer.status_code == 200, answer.text
        usage = answer.json()["usage"]
        assert int(answer.headers["x-quota-remaining-tokens"]) >= 0
        assert answer.headers["x-quota-scope"] in {"user", "tenant"}
        balances = client.get("/v1/me/usage", headers=staff).json()["quotas"]
        user = next(q for q in balances if q["scope"] == "user")
        # Settled with the real use, not the 10 tokens reserved for the answer.
        assert user["used"] == usage["total_tokens"]
        assert user["remaining"] == 200 - usage["total_tokens"]
        refused = client.post(
            "/v1/chat/completions", json={**CHAT, "max_tokens": 60}, headers=staff
        )
        assert refused.status_code == 429
        body = refused.json()
        assert "resets at" in body["detail"]
        assert body["quota_scope"] == "user"
        assert int(refused.headers["retry-after"]) > 0
        assert len(primary.requests) == 1  # the refused request never reached the model


def test_security_headers_and_hsts_behind_tls(api: TestClient, keys: TestKeys) -> None:
    response = api.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in response.headers
    tls = api.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert tls.headers["strict-transport-security"].startswith("max-age=")
    error = api.get("/v1/me")
    assert error.status_code == 401
    assert error.headers["x-content-type-options"] == "nosniff"


def test_cors_only_for_configured_origins(
    settings: Settings, keys: TestKeys, database: Database
) -> None:
    with build(settings, keys, database) as closed:
        response = closed.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers
    allowed = settings.model_copy(
        update={"api": settings.api.model_copy(update={"cors_origins": ["https://portal.corp"]})}
    )
    with build(allowed, keys, database) as open_client:
        ok = open_client.get("/healthz", headers={"Origin": "https://portal.corp"})
        assert ok.headers["access-control-allow-origin"] == "https://portal.corp"
        other = open_client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_oversized_bodies_and_forged_request_ids(api: TestClient, keys: TestKeys) -> None:
    staff = keys.header("staff")
    huge = {**CHAT, "messages": [{"role": "user", "content": "x" * 10_000}]}
    too_big = api.post("/v1/chat/completions", json=huge, headers=staff)
    assert too_big.status_code == 413
    assert too_big.json()["request_id"]
    forged = api.get("/v1/me", headers={**staff, "X-Request-ID": "evil id; injected=1"})
    assert forged.headers["x-request-id"] != "evil id; injected=1"
    assert forged.headers["x-request-id"].startswith("req_")


def test_sse_frames_cannot_be_forged_by_content(
    settings: Settings, keys: TestKeys, database: Database
) -> None:
    primary = ScriptedLLM(reply="line\n\ndata: [DONE]\n\nevent: error")
    with build(settings, keys, database, primary) as client:
        response = client.post(
            "/v1/chat/completions", json={**CHAT, "stream": True}, headers=keys.header("staff")
        )
    frames = [f for f in response.content.split(b"\n\n") if f]
    assert frames[-1] == b"data: [DONE]"
    assert sum(f == b"data: [DONE]" for f in frames) == 1
    for frame in frames[:-1]:
        assert frame.startswith(b"data: {")
        json.loads(frame[6:])


def test_a_tenants_runtime_quota_replaces_the_settings_quota(
    settings: Settings, keys: TestKeys, database: Database
) -> None:
    primary = ScriptedLLM(reply="one two three")
    with build(settings, keys, database, primary) as client:
        staff, admin = keys.header("staff"), keys.header("tenant_admin")
        usage = client.get("/v1/me/usage", headers=staff).json()["quotas"]
        assert next(q for q in usage if q["scope"] == "user")["limit"] == (
            settings.limits.user_tokens.tokens
        )
        saved = client.put(
            "/v1/config",
            json={"overrides": {"limits": {"user_tokens": 200}}, "note": "pilot budget"},
            headers=admin,
        )
        assert saved.status_code == 201, saved.text
        assert saved.json()["effective"]["user_tokens"] == 200
        answer = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 10}, headers=staff)
        assert answer.status_code == 200, answer.text
        user = next(
            q
            for q in client.get("/v1/me/usage", headers=staff).json()["quotas"]
            if q["scope"] == "user"
        )
        assert user["limit"] == 200
        assert user["used"] == answer.json()["usage"]["total_tokens"]
        refused = client.post(
            "/v1/chat/completions", json={**CHAT, "max_tokens": 60}, headers=staff
        )
        assert refused.status_code == 429, refused.text
        assert refused.json()["quota_limit"] == 200
        invalid = client.put(
            "/v1/config",
            json={"overrides": {"limits": {"user_tokens": 0}}, "note": "none"},
            headers=admin,
        )
        assert invalid.status_code == 400
        assert "limits.user_tokens" in invalid.json()["detail"]
