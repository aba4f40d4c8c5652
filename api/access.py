"""Who may call what: every route's allowed roles in one table, and the guard enforcing it.

``ROUTE_POLICY`` maps ``(method, path template)`` (Litestar's path format, parameters as
``{name}``) to the roles allowed, or to ``PUBLIC``.
A route missing from the table is refused for everyone (and a test enumerates the app's
routes, so a new route without a policy fails the suite). The guard authenticates the
caller (``api.security.Authenticator``), checks the role, applies the per-user and
per-tenant request rates, and leaves the ``Principal`` in the request state.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.handlers import BaseRouteHandler
from litestar.types import Message, Scope

from api.security import Forbidden, Principal, RateLimited, Role, Unauthenticated
from api.security.authenticator import Authenticator
from api.security.rate_limits import RateLimiter
from api.stores.audit_trail import AuditTrail
from core.metrics import EnclaveMetrics
from core.tracing import span

__all__ = [
    "PUBLIC",
    "ROUTE_POLICY",
    "Gatekeeper",
    "principal_of",
    "rate_limit_headers",
]

_log = logging.getLogger("enclave.api.access")

PUBLIC: frozenset[Role] = frozenset()
"""Marker: no credentials needed (probes, the Prometheus scrape, the portal's page and
static files — every API call the portal makes carries the user's key)."""

_STAFF: frozenset[Role] = frozenset({"staff"})
_TENANT_ADMIN: frozenset[Role] = frozenset({"tenant_admin"})
_PLATFORM_ADMIN: frozenset[Role] = frozenset({"platform_admin"})
_AUDITOR: frozenset[Role] = frozenset({"auditor"})
_ANY: frozenset[Role] = frozenset({"staff", "tenant_admin", "auditor", "platform_admin"})
_KB = "/v1/knowledge-bases/{name}"

ROUTE_POLICY: dict[tuple[str, str], frozenset[Role]] = {
    # Probes: the platform's, answered without credentials.
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    # The chat portal's page and assets: public; every API call it makes carries a key.
    ("GET", "/"): PUBLIC,
    ("GET", "/portal/{file}"): PUBLIC,
    ("GET", "/portal/config.json"): PUBLIC,  # how the portal signs in (no secrets in it)
    # Chat: staff, and tenant admins trying their prompts; auditors never chat.
    ("POST", "/v1/chat/completions"): _STAFF | _TENANT_ADMIN,
    ("GET", "/v1/models"): _ANY,
    ("GET", "/v1/info"): _ANY,
    # What runs (deployments, models, stores, canary): the platform's operators.
    ("GET", "/v1/admin/status"): _PLATFORM_ADMIN,
    ("GET", "/v1/me"): _ANY,
    ("GET", "/v1/me/usage"): _ANY,
    # Knowledge bases: staff read (pick one, open a cited passage); tenant admins manage.
    ("GET", "/v1/knowledge-bases"): _STAFF | _TENANT_ADMIN,
    ("POST", "/v1/knowledge-bases"): _TENANT_ADMIN,
    ("GET", _KB): _STAFF | _TENANT_ADMIN,
    ("DELETE", _KB): _TENANT_ADMIN,
    ("POST", f"{_KB}/documents"): _TENANT_ADMIN,
    ("GET", f"{_KB}/documents"): _TENANT_ADMIN,
    ("DELETE", f"{_KB}/documents/{{doc_id}}"): _TENANT_ADMIN,
    ("POST", f"{_KB}/reindex"): _TENANT_ADMIN,
    ("GET", f"{_KB}/passages/{{chunk_id}}"): _STAFF | _TENANT_ADMIN,
    # The caller's own history.
    ("GET", "/v1/conversations"): _STAFF | _TENANT_ADMIN,
    ("GET", "/v1/conversations/{conversation_id}"): _STAFF | _TENANT_ADMIN,
    ("PATCH", "/v1/conversations/{conversation_id}"): _STAFF | _TENANT_ADMIN,
    ("DELETE", "/v1/conversations/{conversation_id}"): _STAFF | _TENANT_ADMIN,
    ("GET", "/v1/conversations/{conversation_id}/export"): _STAFF | _TENANT_ADMIN,
    # The caller's portal profile (display name, language, default knowledge base).
    ("GET", "/v1/me/profile"): _ANY,
    ("PUT", "/v1/me/profile"): _ANY,
    # Quality signals on the caller's own answers; the quality view for tenant admins.
    ("POST", "/v1/feedback"): _STAFF | _TENANT_ADMIN,
    ("POST", "/v1/signals"): _STAFF | _TENANT_ADMIN,
    ("GET", "/v1/quality"): _TENANT_ADMIN,
    ("GET", "/v1/evals"): _TENANT_ADMIN,
    # Prompt versions: tenant admins of their tenant (and its clients).
    ("GET", "/v1/prompts"): _TENANT_ADMIN,
    ("GET", "/v1/prompts/{name}/versions"): _TENANT_ADMIN,
    ("POST", "/v1/prompts/{name}/versions"): _TENANT_ADMIN,
    ("GET", "/v1/prompts/{name}/versions/{version_id}"): _TENANT_ADMIN,
    ("GET", "/v1/prompts/{name}/diff"): _TENANT_ADMIN,
    ("POST", "/v1/prompts/{name}/versions/{version_id}/activate"): _TENANT_ADMIN,
    ("POST", "/v1/prompts/{name}/rollback"): _TENANT_ADMIN,
    # Runtime configuration versions: tenant admins for their tenant, platform admins for
    # every tenant (and the '*' level above them).
    ("GET", "/v1/config"): _TENANT_ADMIN | _PLATFORM_ADMIN,
    ("PUT", "/v1/config"): _TENANT_ADMIN | _PLATFORM_ADMIN,
    ("GET", "/v1/config/versions"): _TENANT_ADMIN | _PLATFORM_ADMIN,
    ("POST", "/v1/config/versions/{number}/activate"): _TENANT_ADMIN | _PLATFORM_ADMIN,
    # The audit log: auditors only, read only.
    ("GET", "/v1/audit/records"): _AUDITOR,
    ("GET", "/v1/audit/export"): _AUDITOR,
    ("GET", "/v1/audit/verify"): _AUDITOR,
    ("GET", "/v1/audit/bundle"): _AUDITOR,
    ("GET", "/v1/audit/events"): _AUDITOR,
    # Platform administration.
    ("GET", "/v1/admin/api-keys"): _PLATFORM_ADMIN,
    ("POST", "/v1/admin/api-keys"): _PLATFORM_ADMIN,
    ("DELETE", "/v1/admin/api-keys/{key_id}"): _PLATFORM_ADMIN,
    ("DELETE", "/v1/admin/subjects/{subject}"): _PLATFORM_ADMIN,
    # The API description: any signed-in caller.
    ("GET", "/schema"): _ANY,
    ("GET", "/schema/openapi.json"): _ANY,
    ("GET", "/schema/openapi.yaml"): _ANY,
    ("GET", "/schema/openapi.yml"): _ANY,
    ("GET", "/schema/{path}"): _ANY,
}

_PRINCIPAL = "enclave_principal"
_RATE_HEADERS = "enclave_rate_headers"


def principal_of(scope: Scope | dict[str, Any]) -> Principal:
    """The caller the guard authenticated (only on routes that are not public)."""
    principal = scope.get("state", {}).get(_PRINCIPAL)
    if not isinstance(principal, Principal):  # pragma: no cover - guarded routes only
        msg = "no authenticated caller on this request"
        raise Unauthenticated(msg)
    return principal


class Gatekeeper:
    """The app-wide guard: authentication, the route's roles, request rates."""

    def __init__(
        self,
        authenticator: Authenticator,
        rate_limiter: RateLimiter,
        trail: AuditTrail,
        metrics: EnclaveMetrics,
    ) -> None:
        self._authenticator = authenticator
        self._rate_limiter = rate_limiter
        self._trail = trail
        self._metrics = metrics

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler
    ) -> None:
        scope = connection.scope
        method = str(scope.get("method", "GET"))
        if method == "OPTIONS":
            return  # CORS preflight carries no credentials by design
        template = str(scope.get("path_template", connection.url.path))
        allowed = ROUTE_POLICY.get((method, template))
        if allowed is PUBLIC:
            return
        started = time.perf_counter()
        try:
            with span("auth"):
                principal = await self._authenticator.authenticate(
                    connection.headers.get("authorization")
                )
        except Unauthenticated:
            self._metrics.rejection("unauthenticated")
            # A presented credential that fails is worth an auditor's look; a missing one
            # (a browser, a probe) is not, and recording those would let anyone fill the log.
            if connection.headers.get("authorization"):
                await self._trail.refused_credentials(
                    route=template, method=method, reason="invalid credentials"
                )
            raise
        if allowed is None or not principal.has_role(*allowed):
            _log.info(
                "forbidden",
                extra={"route": template, "method": method, "roles": sorted(principal.roles)},
            )
            self._metrics.rejection("forbidden")
            needed = " or ".join(sorted(allowed or ())) or "a role no caller has"
            msg = f"{method} {template} needs the role {needed}; ask an admin to grant it."
            raise Forbidden(msg)
        try:
            decision = await self._rate_limiter.enforce(principal)
        except RateLimited:
            self._metrics.rejection("rate_limited")
            raise
        self._metrics.observe_stage("auth", time.perf_counter() - started)
        state = scope.setdefault("state", {})
        state[_PRINCIPAL] = principal
        state[_RATE_HEADERS] = decision.headers()


async def rate_limit_headers(message: Message, scope: Scope) -> None:
    """``before_send`` hook: the caller's remaining request budget on every response."""
    if message["type"] != "http.response.start":
        return
    headers = scope.get("state", {}).get(_RATE_HEADERS)
    if headers:
        mutable = MutableScopeHeaders.from_message(message)
        for name, value in headers.items():
            mutable[name] = value
