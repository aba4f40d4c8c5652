"""Authentication, roles, request rate limits and token quotas (issue 5).

Building blocks, wired into the app by ``api/app.py``: :class:`Authenticator` (over
:class:`OIDCVerifier` and :func:`verify_api_key`) turns the ``Authorization`` header into a
:class:`Principal`; :func:`require_role` guards actions; :class:`RateLimiter` and a
:class:`QuotaLedger` (memory or Redis) admit requests, following :class:`StoreOutage`'s policy
while Redis is unavailable. Errors: :mod:`api.security.errors`.
"""

from __future__ import annotations

from api.security.api_keys import (
    ApiKeyRecord,
    ApiKeyStore,
    IssuedApiKey,
    MemoryApiKeyStore,
    hash_api_key,
    issue_api_key,
    verify_api_key,
)
from api.security.authenticator import Authenticator
from api.security.errors import (
    Forbidden,
    QuotaExceeded,
    RateLimited,
    TooManyRequests,
    Unauthenticated,
)
from api.security.jwt_auth import OIDCVerifier
from api.security.principal import ROLES, AuthMethod, Principal, Role, oidc_subject, require_role
from api.security.quotas import (
    AlarmCallback,
    MemoryQuotaLedger,
    QuotaAlarm,
    QuotaBalance,
    QuotaLedger,
    QuotaScope,
    Reservation,
    period_bounds,
    quota_scopes,
)
from api.security.quotas_redis import RedisQuotaLedger
from api.security.rate_limits import RateDecision, RateLimiter, build_limits_store
from api.security.store_outage import StoreOutage

__all__ = [
    "ROLES",
    "AlarmCallback",
    "ApiKeyRecord",
    "ApiKeyStore",
    "AuthMethod",
    "Authenticator",
    "Forbidden",
    "IssuedApiKey",
    "MemoryApiKeyStore",
    "MemoryQuotaLedger",
    "OIDCVerifier",
    "Principal",
    "QuotaAlarm",
    "QuotaBalance",
    "QuotaExceeded",
    "QuotaLedger",
    "QuotaScope",
    "RateDecision",
    "RateLimited",
    "RateLimiter",
    "RedisQuotaLedger",
    "Reservation",
    "Role",
    "StoreOutage",
    "TooManyRequests",
    "Unauthenticated",
    "build_limits_store",
    "hash_api_key",
    "issue_api_key",
    "oidc_subject",
    "period_bounds",
    "quota_scopes",
    "require_role",
    "verify_api_key",
]
