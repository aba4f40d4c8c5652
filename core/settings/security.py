"""Settings sections for authentication, request rate limits and token quotas (issue 5).

They are one module of ``core.settings`` (which re-exports them) so that the security knobs
read as one page. Secrets never live here: the settings tree is hashed into the config
version and dumped for support; the API-key pepper is read from a file that a Secret
mounts, and the Redis URL must not carry a password (use Redis ACLs from a mounted file or
a password-less in-cluster Redis behind a NetworkPolicy).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from core.settings.base import Section

__all__ = [
    "ROLE_NAMES",
    "ApiKeySettings",
    "AuthSettings",
    "LimitsSettings",
    "OIDCSettings",
    "QuotaPeriod",
    "RoleName",
    "StoreOutagePolicy",
    "TokenQuotaSettings",
]

RoleName = Literal["staff", "tenant_admin", "auditor", "platform_admin"]
"""The roles Enclave knows; ``api.security.Role`` is this type."""

ROLE_NAMES: tuple[RoleName, ...] = ("staff", "tenant_admin", "auditor", "platform_admin")

StoreOutagePolicy = Literal["fail_closed", "fail_open"]
"""What rate limits and quotas do while their store (Redis) is unavailable."""

QuotaPeriod = Literal["hour", "day", "month"]
"""Calendar periods in UTC: a quota resets at the top of the hour, at midnight, on the 1st."""

# Asymmetric algorithms only: a JWKS holds public keys, and an HS* allow-list entry would let
# a token "signed" with the public key itself pass (algorithm confusion).
_ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_TENANT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# RFC 6749 scope-token: printable ASCII without space, '"' and '\\'.
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})


_Section = Section


class OIDCSettings(_Section):
    """OIDC bearer tokens (JWT) from the organisation's identity provider."""

    enabled: bool = Field(default=False, description="Accept OIDC bearer tokens.")
    issuer: str | None = Field(
        default=None, description="Expected `iss` claim, exactly as the IdP writes it."
    )
    audience: str | None = Field(
        default=None, description="Expected `aud` claim: the client id Enclave is registered as."
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        description="Signature algorithms accepted (asymmetric only; never none or HS*).",
    )
    jwks_file: Path | None = Field(
        default=None,
        description="JWKS file (reloaded when it changes). Exactly one of jwks_file/jwks_url.",
    )
    jwks_url: str | None = Field(
        default=None,
        description="JWKS URL inside the cluster (http or https). Exactly one of "
        "jwks_file/jwks_url.",
    )
    jwks_cache_s: float = Field(
        default=300.0, gt=0, description="How long fetched JWKS keys are used before a refetch."
    )
    jwks_min_refetch_s: float = Field(
        default=30.0,
        ge=0,
        description="A token with an unknown `kid` triggers a refetch (key rotation) at most "
        "this often, so forged kids cannot make Enclave hammer the IdP.",
    )
    jwks_timeout_s: float = Field(
        default=3.0, gt=0, description="Timeout of one JWKS fetch from jwks_url."
    )
    leeway_s: float = Field(
        default=30.0, ge=0, le=300, description="Clock skew tolerated on exp, nbf and iat."
    )
    user_id_claim: str = Field(
        default="sub",
        description="Claim that identifies the user; stored only as sha256(issuer, value).",
    )
    tenant_claim: str = Field(
        default="tenant", description="Claim holding the tenant id (dots address nested claims)."
    )
    roles_claim: str = Field(
        default="groups",
        description="Claim holding the user's IdP groups (a list or a space-separated string; "
        "dots address nested claims, e.g. realm_access.roles).",
    )
    role_mapping: dict[str, RoleName] = Field(
        default_factory=dict,
        description="IdP group name → Enclave role. Groups not listed grant nothing.",
    )
    default_roles: list[RoleName] = Field(
        default_factory=lambda: list[RoleName](["staff"]),
        description="Roles every authenticated OIDC user has, whatever their groups.",
    )
    default_tenant: str | None = Field(
        default="default",
        description="Tenant of tokens without the tenant claim; null: such tokens are refused.",
    )
    # The portal's own sign-in (authorization code + PKCE, a public client: no secret). All
    # three of client id and endpoints, or none: the portal offers OIDC only when complete.
    portal_client_id: str | None = Field(
        default=None,
        description="Client id the portal is registered as at the IdP (a public client with "
        "PKCE, redirect URI: the portal's own `/`); null: the portal signs in with API keys.",
    )
    authorization_endpoint: str | None = Field(
        default=None,
        description="The IdP's authorization endpoint the browser is sent to (https; http only "
        "for localhost).",
    )
    token_endpoint: str | None = Field(
        default=None,
        description="The IdP's token endpoint the portal exchanges the code at (https; http "
        "only for localhost). Its origin is added to the portal's CSP connect-src.",
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["openid"],
        description="Scopes the portal asks for; must include openid.",
    )

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        bad = [alg for alg in value if alg not in _ASYMMETRIC_ALGORITHMS]
        if bad:
            msg = (
                f"unsupported or unsafe algorithm(s) {bad}; choose from "
                f"{sorted(_ASYMMETRIC_ALGORITHMS)} (none and HS* are never accepted)"
            )
            raise ValueError(msg)
        if not value:
            msg = "at least one algorithm is required"
            raise ValueError(msg)
        return value

    @field_validator("jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"http", "https"}:
            msg = "jwks_url must be an http(s) URL inside the cluster"
            raise ValueError(msg)
        return value

    @field_validator("authorization_endpoint", "token_endpoint")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        local = parts.hostname in _LOCAL_HOSTS
        if not parts.hostname or parts.scheme not in ({"http", "https"} if local else {"https"}):
            msg = (
                f"{value!r} must be an https URL (http is accepted for localhost and "
                "127.0.0.1 only): the browser sends codes and receives tokens there"
            )
            raise ValueError(msg)
        if parts.username or parts.password or parts.fragment:
            msg = f"{value!r} must not carry credentials or a #fragment"
            raise ValueError(msg)
        return value

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            msg = "scopes must include openid (the portal checks the nonce of the tokens)"
            raise ValueError(msg)
        bad = [scope for scope in value if not _SCOPE.match(scope)]
        if bad:
            msg = f"scopes {bad} are not valid scope tokens (no spaces, quotes or backslashes)"
            raise ValueError(msg)
        return value

    @property
    def portal_sign_in(self) -> bool:
        """Whether the portal offers "Sign in with your organisation"."""
        return self.enabled and self.portal_client_id is not None

    @field_validator("default_tenant")
    @classmethod
    def _tenant_id(cls, value: str | None) -> str | None:
        if value is not None and not _TENANT_ID.match(value):
            msg = "default_tenant must be 1-64 characters of letters, digits, '.', '_' or '-'"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> OIDCSettings:
        if not self.enabled:
            return self
        problems = []
        if not self.issuer:
            problems.append("auth.oidc.issuer is required when OIDC is enabled")
        if not self.audience:
            problems.append("auth.oidc.audience is required when OIDC is enabled")
        if (self.jwks_file is None) == (self.jwks_url is None):
            problems.append("set exactly one of auth.oidc.jwks_file and auth.oidc.jwks_url")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _portal_all_or_nothing(self) -> OIDCSettings:
        portal = {
            "portal_client_id": self.portal_client_id,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
        }
        given = [name for name, value in portal.items() if value]
        if not given:
            return self
        missing = [f"auth.oidc.{name}" for name, value in portal.items() if not value]
        if missing:
            msg = (
                f"portal sign-in needs all of auth.oidc.portal_client_id, authorization_endpoint "
                f"and token_endpoint; missing: {', '.join(missing)} (or unset all three)"
            )
            raise ValueError(msg)
        if not self.enabled:
            msg = (
                "auth.oidc.portal_client_id is set but auth.oidc.enabled is false: the API "
                "would refuse the portal's tokens; enable OIDC or unset the portal fields"
            )
            raise ValueError(msg)
        return self


class ApiKeySettings(_Section):
    """API keys for service accounts and the canary."""

    enabled: bool = Field(default=True, description="Accept API keys (Bearer enc_...).")
    prefix: str = Field(
        default="enc_",
        pattern=r"^[a-z][a-z0-9]{1,15}_$",
        description="Prefix of every key Enclave issues (lets secret scanners find leaks).",
    )
    pepper_file: Path | None = Field(
        default=None,
        description="File (a mounted Secret) whose bytes key the HMAC-SHA256 of stored keys; "
        "null: plain SHA-256. Changing it invalidates every issued key.",
    )


class AuthSettings(_Section):
    """Who may call the API: OIDC bearer tokens and API keys."""

    oidc: OIDCSettings = Field(default_factory=OIDCSettings, description="OIDC bearer tokens.")
    api_keys: ApiKeySettings = Field(default_factory=ApiKeySettings, description="API keys.")


class TokenQuotaSettings(_Section):
    """A token budget per period; reserved from max_tokens, settled with real usage."""

    tokens: int | None = Field(
        default=None, ge=1, description="Tokens allowed per period; null: unlimited."
    )
    period: QuotaPeriod = Field(default="day", description="Calendar period (UTC) it resets on.")


class LimitsSettings(_Section):
    """Request rate limits and token quotas, shared by every API replica through the store."""

    store: Literal["memory", "redis"] = Field(
        default="memory",
        description="Where counters live: memory (one API process) or redis (shared by all).",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis:// or rediss://, no password in it); required when store "
        "is redis.",
    )
    redis_password_file: Path | None = Field(
        default=None, description="File (a mounted Secret) holding the Redis password, if any."
    )
    key_prefix: str = Field(
        default="enclave",
        pattern=r"^[A-Za-z0-9._-]{1,32}$",
        description="Prefix of every key written to the store.",
    )
    user_requests_per_minute: int | None = Field(
        default=60, ge=1, description="Requests one user may make per minute; null: unlimited."
    )
    tenant_requests_per_minute: int | None = Field(
        default=600, ge=1, description="Requests one tenant may make per minute; null: unlimited."
    )
    user_tokens: TokenQuotaSettings = Field(
        default_factory=lambda: TokenQuotaSettings(tokens=500_000, period="day"),
        description="Token quota of each user.",
    )
    tenant_tokens: TokenQuotaSettings = Field(
        default_factory=lambda: TokenQuotaSettings(tokens=50_000_000, period="month"),
        description="Token quota of each tenant.",
    )
    alarm_levels: list[int] = Field(
        default_factory=lambda: [50, 80, 100],
        description="Percentages of a quota that raise an alarm, once per scope and period.",
    )
    reservation_lease_ttl_s: float = Field(
        default=30.0,
        ge=5,
        le=3600,
        description="Token reservations of an API process that stopped renewing its lease for "
        "this long (it crashed) are given back to the quota (redis store; the process renews "
        "every third of it). A crash can hold tokens for up to about 1.3 times this. At least "
        "5 s, so that one renewal waiting out the Redis client's 2 s timeout keeps the lease.",
    )
    on_store_unavailable: StoreOutagePolicy = Field(
        default="fail_closed",
        description="While the limits store (Redis) is unavailable: fail_closed refuses chats "
        "and rate-limited requests with 503 and Retry-After (no request escapes its limits); "
        "fail_open lets them proceed unmetered and logs each one. Either way "
        "enclave_limits_store_unavailable_total counts the failures and an alert fires.",
    )

    @field_validator("alarm_levels")
    @classmethod
    def _levels(cls, value: list[int]) -> list[int]:
        if any(level < 1 or level > 100 for level in value) or len(set(value)) != len(value):
            msg = "alarm_levels must be distinct percentages between 1 and 100"
            raise ValueError(msg)
        return sorted(value)

    @field_validator("redis_url")
    @classmethod
    def _secret_free_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in {"redis", "rediss", "unix"}:
            msg = "redis_url must start with redis://, rediss:// or unix://"
            raise ValueError(msg)
        if parts.password:
            msg = "redis_url must not contain a password: settings are logged and hashed"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _redis_needs_url(self) -> LimitsSettings:
        if self.store == "redis" and self.redis_url is None:
            msg = "limits.redis_url is required when limits.store is redis"
            raise ValueError(msg)
        return self
