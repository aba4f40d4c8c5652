"""``/v1/me`` and ``/v1/me/usage``: who the caller is, and what is left of their budgets."""

from __future__ import annotations

from typing import Any

from litestar import get

from api.chat.request_plan import Planner
from api.security import Principal, quota_scopes
from api.services import Services

__all__ = ["me", "my_usage"]


@get("/v1/me", tags=["me"], summary="The authenticated caller")
async def me(principal: Principal) -> dict[str, Any]:
    """Pseudonymous subject, tenant, roles and how the caller signed in."""
    return {
        "subject": principal.subject,
        "tenant": principal.tenant,
        "roles": sorted(principal.roles),
        "auth_method": principal.auth_method,
        "key_id": principal.key_id,
    }


@get("/v1/me/usage", tags=["me"], summary="Token quota balances and request rates")
async def my_usage(principal: Principal, services: Services, planner: Planner) -> dict[str, Any]:
    """Remaining tokens of the caller's and their tenant's quota, and when each resets."""
    limits = services.settings.limits
    runtime = await planner.runtime(principal.tenant)
    quotas = []
    scopes = quota_scopes(
        principal,
        limits,
        user_tokens=runtime.user_tokens,
        tenant_tokens=runtime.tenant_tokens,
    )
    for scope in scopes:
        balance = await services.security.quotas.balance(scope)
        quotas.append(
            {
                "scope": scope.kind,
                "period": scope.period,
                "limit": scope.limit,
                "used": balance.used,
                "remaining": balance.remaining,
                "resets_at": balance.resets_at.isoformat(),
            }
        )
    return {
        "quotas": quotas,
        "rate_limits": {
            "user_requests_per_minute": limits.user_requests_per_minute,
            "tenant_requests_per_minute": limits.tenant_requests_per_minute,
        },
    }
