"""Every route by every caller → the expected status. The routes are read from the app, so a
route without a declared policy fails here; so does a policy for a route that is gone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from api.access import PUBLIC, ROUTE_POLICY
from api.app import create_app
from core.db import Database
from core.settings import Settings
from tests.fakes import TestKeys, build_services

CALLERS = [
    "anonymous",
    "staff",
    "tenant_admin",
    "auditor",
    "platform_admin",
    "foreign_staff",
    "foreign_admin",
    "revoked",
    "expired",
]
ROLE_OF = {
    "staff": "staff",
    "tenant_admin": "tenant_admin",
    "auditor": "auditor",
    "platform_admin": "platform_admin",
    "foreign_staff": "staff",
    "foreign_admin": "tenant_admin",
}
CONV = "conv_" + "0" * 24
CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "vpn at the hotel?"}]}
# How to call each route, and what a caller allowed in tenant "default" gets.
CALLS: dict[tuple[str, str], tuple[str, dict[str, Any], int]] = {
    ("GET", "/healthz"): ("/healthz", {}, 200),
    ("GET", "/readyz"): ("/readyz", {}, 200),
    ("GET", "/metrics"): ("/metrics", {}, 200),
    ("GET", "/"): ("/", {}, 200),
    ("GET", "/portal/{file}"): ("/portal/portal.js", {}, 200),
    ("GET", "/portal/config.json"): ("/portal/config.json", {}, 200),
    ("POST", "/v1/chat/completions"): ("/v1/chat/completions", {"json": CHAT}, 200),
    ("GET", "/v1/models"): ("/v1/models", {}, 200),
    ("GET", "/v1/info"): ("/v1/info", {}, 200),
    ("GET", "/v1/me"): ("/v1/me", {}, 200),
    ("GET", "/v1/me/usage"): ("/v1/me/usage", {}, 200),
    ("GET", "/v1/knowledge-bases"): ("/v1/knowledge-bases", {}, 200),
    ("POST", "/v1/knowledge-bases"): ("/v1/knowledge-bases", {"json": {"name": "new"}}, 201),
    ("GET", "/v1/knowledge-bases/{name}"): ("/v1/knowledge-bases/handbook", {}, 200),
    ("DELETE", "/v1/knowledge-bases/{name}"): ("/v1/knowledge-bases/handbook", {}, 204),
    ("POST", "/v1/knowledge-bases/{name}/documents"): (
        "/v1/knowledge-bases/handbook/documents",
        {"files": [("files", ("a.md", b"# A"))]},
        201,
    ),
    ("GET", "/v1/knowledge-bases/{name}/documents"): (
        "/v1/knowledge-bases/handbook/documents",
        {},
        200,
    ),
    ("DELETE", "/v1/knowledge-bases/{name}/documents/{doc_id}"): (
        "/v1/knowledge-bases/handbook/documents/it-vpn",
        {},
        200,
    ),
    ("POST", "/v1/knowledge-bases/{name}/reindex"): (
        "/v1/knowledge-bases/handbook/reindex",
        {},
        200,
    ),
    ("GET", "/v1/knowledge-bases/{name}/passages/{chunk_id}"): (
        "/v1/knowledge-bases/handbook/passages/it-vpn%230-aaaa",
        {},
        200,
    ),
    ("GET", "/v1/admin/api-keys"): ("/v1/admin/api-keys", {}, 200),
    ("GET", "/v1/admin/status"): ("/v1/admin/status", {}, 200),
    ("POST", "/v1/admin/api-keys"): (
        "/v1/admin/api-keys",
        {"json": {"name": "ci", "tenant": "default", "roles": ["staff"]}},
        201,
    ),
    ("DELETE", "/v1/admin/api-keys/{key_id}"): ("/v1/admin/api-keys/{staff_key_id}", {}, 204),
    ("GET", "/v1/conversations"): ("/v1/conversations", {}, 200),
    # No such conversation: allowed callers get 404, the others 401/403 before that.
    ("GET", "/v1/conversations/{conversation_id}"): (f"/v1/conversations/{CONV}", {}, 404),
    ("PATCH", "/v1/conversations/{conversation_id}"): (
        f"/v1/conversations/{CONV}",
        {"json": {"title": "renamed"}},
        404,
    ),
    ("DELETE", "/v1/conversations/{conversation_id}"): (f"/v1/conversations/{CONV}", {}, 404),
    ("GET", "/v1/conversations/{conversation_id}/export"): (
        f"/v1/conversations/{CONV}/export",
        {},
        404,
    ),
    ("GET", "/v1/audit/records"): ("/v1/audit/records", {}, 200),
    ("GET", "/v1/audit/export"): ("/v1/audit/export", {}, 200),
    ("GET", "/v1/audit/verify"): ("/v1/audit/verify", {}, 200),
    ("GET", "/v1/audit/bundle"): ("/v1/audit/bundle", {}, 200),
    ("GET", "/v1/audit/events"): ("/v1/audit/events", {"params": {"idle_timeout_s": 0}}, 200),
    ("DELETE", "/v1/admin/subjects/{subject}"): (
        "/v1/admin/subjects/u_nobody",
        {"params": {"tenant": "default"}},
        200,
    ),
    ("GET", "/v1/me/profile"): ("/v1/me/profile", {}, 200),
    ("PUT", "/v1/me/profile"): (
        "/v1/me/profile",
        {"json": {"display_name": "Sam", "language": "de"}},
        200,
    ),
    # No such answer: allowed callers get 404, the others 401/403 before that.
    ("POST", "/v1/feedback"): (
        "/v1/feedback",
        {"json": {"request_id": "req-unknown", "rating": "up"}},
        404,
    ),
    ("POST", "/v1/signals"): (
        "/v1/signals",
        {"json": {"request_id": "req-unknown", "kind": "copy"}},
        404,
    ),
    ("GET", "/v1/quality"): ("/v1/quality", {}, 200),
    ("GET", "/v1/evals"): ("/v1/evals", {}, 200),
    ("GET", "/v1/prompts"): ("/v1/prompts", {}, 200),
    ("GET", "/v1/prompts/{name}/versions"): ("/v1/prompts/chat/versions", {}, 200),
    ("POST", "/v1/prompts/{name}/versions"): (
        "/v1/prompts/chat/versions",
        {"json": {"parts": {"welcome": "Hello from {{ tenant }}."}, "note": "greeting"}},
        201,
    ),
    ("GET", "/v1/prompts/{name}/versions/{version_id}"): (
        "/v1/prompts/chat/versions/pv_unknown",
        {},
        404,
    ),
    ("GET", "/v1/prompts/{name}/diff"): (
        "/v1/prompts/chat/diff",
        {"params": {"from": "global", "to": "global"}},
        200,
    ),
    ("POST", "/v1/prompts/{name}/versions/{version_id}/activate"): (
        "/v1/prompts/chat/versions/pv_unknown/activate",
        {},
        404,
    ),
    # Nothing active at the tenant's level: nothing to roll back.
    ("POST", "/v1/prompts/{name}/rollback"): ("/v1/prompts/chat/rollback", {}, 409),
    ("GET", "/v1/config"): ("/v1/config", {}, 200),
    ("PUT", "/v1/config"): (
        "/v1/config",
        {"json": {"overrides": {"retrieval": {"top_k": 3}}, "note": "fewer passages"}},
        201,
    ),
    ("GET", "/v1/config/versions"): ("/v1/config/versions", {}, 200),
    ("POST", "/v1/config/versions/{number}/activate"): (
        "/v1/config/versions/99/activate",
        {},
        404,
    ),
    ("GET", "/schema"): ("/schema", {}, 200),
    ("GET", "/schema/openapi.json"): ("/schema/openapi.json", {}, 200),
    ("GET", "/schema/openapi.yaml"): ("/schema/openapi.yaml", {}, 200),
    ("GET", "/schema/openapi.yml"): ("/schema/openapi.yml", {}, 200),
    ("GET", "/schema/{path}"): ("/schema/nothing-here", {}, 404),
}
TENANT_SCOPED = ("/v1/knowledge-bases/handbook",)
# The intended matrix, written down independently of api/access.py: who may call what.
EVERYONE = {"staff", "tenant_admin", "auditor", "platform_admin"}
MAY_CALL: dict[tuple[str, str], set[str] | None] = {
    ("GET", "/healthz"): None,  # public
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
    ("GET", "/"): None,  # the portal page and its assets; its API calls carry a key
    ("GET", "/portal/{file}"): None,
    ("GET", "/portal/config.json"): None,  # how to sign in: the IdP's public client data
    ("POST", "/v1/chat/completions"): {"staff", "tenant_admin"},  # auditors never chat
    ("GET", "/v1/models"): EVERYONE,
    ("GET", "/v1/info"): EVERYONE,
    ("GET", "/v1/me"): EVERYONE,
    ("GET", "/v1/me/usage"): EVERYONE,
    ("GET", "/v1/knowledge-bases"): {"staff", "tenant_admin"},
    ("POST", "/v1/knowledge-bases"): {"tenant_admin"},
    ("GET", "/v1/knowledge-bases/{name}"): {"staff", "tenant_admin"},
    ("DELETE", "/v1/knowledge-bases/{name}"): {"tenant_admin"},
    ("POST", "/v1/knowledge-bases/{name}/documents"): {"tenant_admin"},
    ("GET", "/v1/knowledge-bases/{name}/documents"): {"tenant_admin"},
    ("DELETE", "/v1/knowledge-bases/{name}/documents/{doc_id}"): {"tenant_admin"},
    ("POST", "/v1/knowledge-bases/{name}/reindex"): {"tenant_admin"},
    ("GET", "/v1/knowledge-bases/{name}/passages/{chunk_id}"): {"staff", "tenant_admin"},
    ("GET", "/v1/admin/api-keys"): {"platform_admin"},
    ("GET", "/v1/admin/status"): {"platform_admin"},  # what runs: the operators' view
    ("POST", "/v1/admin/api-keys"): {"platform_admin"},
    ("DELETE", "/v1/admin/api-keys/{key_id}"): {"platform_admin"},
    ("GET", "/v1/conversations"): {"staff", "tenant_admin"},
    ("GET", "/v1/conversations/{conversation_id}"): {"staff", "tenant_admin"},
    ("PATCH", "/v1/conversations/{conversation_id}"): {"staff", "tenant_admin"},
    ("DELETE", "/v1/conversations/{conversation_id}"): {"staff", "tenant_admin"},
    ("GET", "/v1/conversations/{conversation_id}/export"): {"staff", "tenant_admin"},
    ("GET", "/v1/audit/records"): {"auditor"},
    ("GET", "/v1/audit/export"): {"auditor"},
    ("GET", "/v1/audit/verify"): {"auditor"},
    ("GET", "/v1/audit/bundle"): {"auditor"},
    ("GET", "/v1/audit/events"): {"auditor"},
    ("DELETE", "/v1/admin/subjects/{subject}"): {"platform_admin"},
    ("GET", "/v1/me/profile"): EVERYONE,
    ("PUT", "/v1/me/profile"): EVERYONE,
    ("POST", "/v1/feedback"): {"staff", "tenant_admin"},
    ("POST", "/v1/signals"): {"staff", "tenant_admin"},
    ("GET", "/v1/quality"): {"tenant_admin"},
    ("GET", "/v1/evals"): {"tenant_admin"},
    ("GET", "/v1/prompts"): {"tenant_admin"},
    ("GET", "/v1/prompts/{name}/versions"): {"tenant_admin"},
    ("POST", "/v1/prompts/{name}/versions"): {"tenant_admin"},
    ("GET", "/v1/prompts/{name}/versions/{version_id}"): {"tenant_admin"},
    ("GET", "/v1/prompts/{name}/diff"): {"tenant_admin"},
    ("POST", "/v1/prompts/{name}/versions/{version_id}/activate"): {"tenant_admin"},
    ("POST", "/v1/prompts/{name}/rollback"): {"tenant_admin"},
    ("GET", "/v1/config"): {"tenant_admin", "platform_admin"},
    ("PUT", "/v1/config"): {"tenant_admin", "platform_admin"},
    ("GET", "/v1/config/versions"): {"tenant_admin", "platform_admin"},
    ("POST", "/v1/config/versions/{number}/activate"): {"tenant_admin", "platform_admin"},
    ("GET", "/schema"): EVERYONE,
    ("GET", "/schema/openapi.json"): EVERYONE,
    ("GET", "/schema/openapi.yaml"): EVERYONE,
    ("GET", "/schema/openapi.yml"): EVERYONE,
    ("GET", "/schema/{path}"): EVERYONE,
}


def app_routes(app: Litestar) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in handler.http_methods:
                    if method != "OPTIONS":
                        found.add((method, route.path_format))
    return found


@pytest.fixture
def app_and_keys(
    settings: Settings, keys: TestKeys, database: Database
) -> Iterator[tuple[TestClient, TestKeys]]:
    services = build_services(settings, keys, database)
    with TestClient(app=create_app(services)) as client:
        yield client, keys


def test_every_route_declares_who_may_call_it(
    settings: Settings, keys: TestKeys, database: Database
) -> None:
    services = build_services(settings, keys, database)
    routes = app_routes(create_app(services))
    assert routes - set(ROUTE_POLICY) == set(), "routes without a declared policy"
    assert set(ROUTE_POLICY) - routes == set(), "policies for routes that do not exist"
    assert set(CALLS) == routes == set(MAY_CALL), "this test must call every route"
    public = {route for route, roles in ROUTE_POLICY.items() if roles is PUBLIC}
    assert public == {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/"),
        ("GET", "/portal/{file}"),
        ("GET", "/portal/config.json"),
    }


def expected_status(route: tuple[str, str], caller: str, url: str, success: int) -> int:
    allowed = MAY_CALL[route]
    if allowed is None:
        return success
    if caller in {"anonymous", "revoked", "expired"}:
        return 401
    if ROLE_OF[caller] not in allowed:
        return 403
    if caller.startswith("foreign") and url.startswith(TENANT_SCOPED):
        return 404  # another tenant's knowledge base does not exist for them
    return success


@pytest.mark.parametrize("route", sorted(CALLS), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_by_caller(app_and_keys: tuple[TestClient, TestKeys], route: tuple[str, str]) -> None:
    client, keys = app_and_keys
    method, _ = route
    template, kwargs, success = CALLS[route]
    failures = []
    for caller in CALLERS:
        url = template.replace("{staff_key_id}", keys.plaintext["auditor"][4:20])
        headers = {} if caller == "anonymous" else keys.header(caller)
        want = expected_status(route, caller, url, success)
        response = client.request(method, url, headers=headers, **kwargs)
        if response.status_code != want:
            failures.append(f"{caller}: {response.status_code} (want {want}) {response.text[:120]}")
        if response.status_code in {401, 403}:
            body = response.json()
            assert body["request_id"], body
            assert body["detail"], body
            if response.status_code == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
    assert failures == []
