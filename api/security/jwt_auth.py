"""OIDC bearer tokens: verify a JWT against the IdP's JWKS and map its claims to a Principal.

What is checked, in order: size and shape; the header's ``alg`` against the allow-list
(asymmetric only: ``none`` and HS* can never pass, see ``core.settings.security``); the
signing key by ``kid``, whose type must fit the algorithm (so an RSA key can never verify
an HS256 "signature" made with its own public PEM); then the signature, ``iss``, ``aud``,
``exp``, ``nbf`` and ``iat`` with the configured leeway; then the mapped claims.

Keys come from a JWKS file or URL:

* a file is re-read whenever its mtime changes (a mounted ConfigMap/Secret being rotated);
* a URL is fetched (asynchronously, with httpx) when the cached set is older than
  ``jwks_cache_s``, and again when a token names a ``kid`` the cache lacks -- that is how a
  rotation is picked up -- but at most once per ``jwks_min_refetch_s``, so forged kids
  cannot turn Enclave into a load generator against the IdP. When a refetch fails the last
  good keys stay in use.

``jwt.PyJWKClient`` is not used: it fetches with blocking urllib (which would stall the
event loop) and refetches on every unknown ``kid`` with no rate limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

from api.security.errors import Unauthenticated
from api.security.principal import Principal, Role, oidc_subject
from core.errors import ConfigurationError, ServiceUnavailable
from core.settings import OIDCSettings

__all__ = ["OIDCVerifier"]

_log = logging.getLogger("enclave.api.auth")

MAX_TOKEN_CHARS = 16_384
_MAX_JWKS_BYTES = 1_000_000
_TENANT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
# Which key types may verify which algorithms (EC additionally by curve).
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVE_ALG = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_KNOWN_ALGS = _RSA_ALGS | set(_EC_CURVE_ALG.values()) | {"EdDSA", "none", "HS256", "HS384"}


def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
    """Whether the JWK may verify ``alg``: its own ``alg`` if it names one, else its type."""
    if jwk.get("alg") is not None:
        return bool(jwk["alg"] == alg)
    kty = jwk.get("kty")
    if kty == "RSA":
        return alg in _RSA_ALGS
    if kty == "EC":
        return _EC_CURVE_ALG.get(str(jwk.get("crv"))) == alg
    if kty == "OKP":
        return alg == "EdDSA" and jwk.get("crv") == "Ed25519"
    return False


def _usable_keys(document: Any, source: str) -> dict[str | None, dict[str, Any]]:
    """The verification keys of a JWKS document, by ``kid``; symmetric keys are dropped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        msg = f"{source}: not a JWKS document (expected an object with a 'keys' list)"
        raise ValueError(msg)
    keys: dict[str | None, dict[str, Any]] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in {"RSA", "EC", "OKP"}:
            continue  # "oct" (shared secrets) never verifies anything here
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            jwt.PyJWK(jwk)
        except jwt.PyJWTError as exc:
            _log.warning("JWKS key skipped", extra={"source": source, "reason": str(exc)})
            continue
        kid = jwk.get("kid")
        keys[kid if isinstance(kid, str) else None] = jwk
    if not keys:
        msg = f"{source}: the JWKS holds no usable signature key (RSA, EC or OKP)"
        raise ValueError(msg)
    return keys


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by exact name, else by dotted path into nested objects."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


@dataclass
class _KeyCache:
    keys: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    loaded_at: float = float("-inf")
    refetched_at: float = float("-inf")  # last refetch an unknown kid triggered
    failed_at: float = float("-inf")  # last failed fetch: retried only after min_refetch
    mtime_ns: int | None = None
    generation: int = 0


class OIDCVerifier:
    """Verifies OIDC bearer tokens and maps their claims to a :class:`Principal`."""

    def __init__(
        self, settings: OIDCSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not settings.enabled or settings.issuer is None or settings.audience is None:
            msg = "OIDCVerifier needs auth.oidc enabled with issuer, audience and a JWKS"
            raise ConfigurationError(msg)
        self._settings = settings
        self._issuer: str = settings.issuer
        self._audience: str = settings.audience
        self._clock = clock
        self._cache = _KeyCache()
        self._lock = asyncio.Lock()
        if settings.jwks_file is not None:
            # Fail at construction, not on the first request.
            try:
                self._load_file(settings.jwks_file)
            except (OSError, ValueError) as exc:
                msg = f"auth.oidc.jwks_file cannot be used: {exc}"
                raise ConfigurationError(msg) from exc

    async def authenticate(self, token: str) -> Principal:
        """The Principal of a valid token; :class:`Unauthenticated` says what is wrong."""
        if len(token) > MAX_TOKEN_CHARS:
            msg = f"The bearer token is longer than {MAX_TOKEN_CHARS} characters."
            raise Unauthenticated(msg)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            msg = "The bearer token is not a well-formed JWT (header.payload.signature)."
            raise Unauthenticated(msg) from exc
        alg = header.get("alg")
        allowed = self._settings.algorithms
        if not isinstance(alg, str) or alg not in allowed:
            named = f"'{alg}'" if isinstance(alg, str) and alg in _KNOWN_ALGS else "an algorithm"
            msg = (
                f"The token is signed with {named} this server does not accept; "
                f"accepted: {', '.join(allowed)}."
            )
            raise Unauthenticated(msg)
        kid = header.get("kid")
        key = await self._key_for(kid if isinstance(kid, str) else None, alg)
        claims = self._decode(token, key, alg)
        return self._principal(claims)

    # -- keys ---------------------------------------------------------------------------

    async def _key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        cache = self._cache
        if self._settings.jwks_file is not None:
            self._reload_file_if_changed(self._settings.jwks_file)
        elif self._clock() - cache.loaded_at >= self._settings.jwks_cache_s:
            await self._refresh(cache.generation, throttle=False)
        jwk = self._find(kid)
        if jwk is None and self._settings.jwks_url is not None:
            # An unknown kid is how a key rotation shows: refetch, but not too often.
            await self._refresh(cache.generation, throttle=True)
            jwk = self._find(kid)
        if jwk is None:
            msg = (
                "The token was signed with a key this server does not know (its 'kid' is not "
                "in the identity provider's key set); request a fresh token."
            )
            raise Unauthenticated(msg)
        if not _fits(jwk, alg):
            msg = f"The token's algorithm '{alg}' does not match the type of its signing key."
            raise Unauthenticated(msg)
        return jwt.PyJWK(jwk, algorithm=alg)

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        keys = self._cache.keys
        if kid is None:
            # Without a kid the choice is only unambiguous for a single-key set.
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    def _load_file(self, path: Path) -> None:
        mtime_ns = path.stat().st_mtime_ns
        raw = path.read_bytes()[:_MAX_JWKS_BYTES]
        keys = _usable_keys(json.loads(raw), str(path))
        self._install(keys)
        self._cache.mtime_ns = mtime_ns

    def _reload_file_if_changed(self, path: Path) -> None:
        try:
            if path.stat().st_mtime_ns == self._cache.mtime_ns:
                return
            self._load_file(path)
            _log.info("JWKS file reloaded", extra={"keys": len(self._cache.keys)})
        except (OSError, ValueError) as exc:
            # A half-written or missing file during a rotation: keep the last good keys.
            _log.warning("JWKS file unreadable; keeping the last good keys: %s", exc)

    async def _refresh(self, seen_generation: int, *, throttle: bool) -> None:
        url = self._settings.jwks_url
        assert url is not None
        async with self._lock:
            cache = self._cache
            if cache.generation != seen_generation:
                return  # another request refreshed while this one waited
            now = self._clock()
            pause = self._settings.jwks_min_refetch_s
            if throttle and now - cache.refetched_at < pause:
                return
            if now - cache.failed_at < pause:
                # The IdP failed a moment ago: do not queue every request behind a timeout.
                self._unavailable_unless_keys(retry_after=int(pause - (now - cache.failed_at)))
                return
            if throttle:
                cache.refetched_at = now
            try:
                keys = await self._fetch(url)
            except (httpx.HTTPError, ValueError) as exc:
                cache.failed_at = now
                _log.warning("JWKS fetch failed: %s", exc)
                self._unavailable_unless_keys(retry_after=int(pause))
                return
            self._install(keys)
            _log.info("JWKS fetched", extra={"keys": len(keys)})

    def _unavailable_unless_keys(self, retry_after: int) -> None:
        if not self._cache.keys:
            msg = "The identity provider's signing keys cannot be loaded; retry shortly."
            raise ServiceUnavailable(msg, retry_after=max(1, retry_after))

    async def _fetch(self, url: str) -> dict[str | None, dict[str, Any]]:
        async with httpx.AsyncClient(
            timeout=self._settings.jwks_timeout_s, trust_env=False, follow_redirects=False
        ) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > _MAX_JWKS_BYTES:
            msg = f"{url}: JWKS larger than {_MAX_JWKS_BYTES} bytes"
            raise ValueError(msg)
        return _usable_keys(response.json(), url)

    def _install(self, keys: dict[str | None, dict[str, Any]]) -> None:
        cache = self._cache
        cache.keys = keys
        cache.loaded_at = self._clock()
        cache.generation += 1

    # -- claims -------------------------------------------------------------------------

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._settings.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            msg = "The token has expired; sign in again to get a new one."
            raise Unauthenticated(msg) from exc
        except jwt.ImmatureSignatureError as exc:
            msg = (
                "The token is not valid yet (nbf or iat lies in the future); check the clock "
                "of the machine that issued it."
            )
            raise Unauthenticated(msg) from exc
        except jwt.InvalidAudienceError as exc:
            msg = f"The token was issued for another audience; request one for '{self._audience}'."
            raise Unauthenticated(msg) from exc
        except jwt.InvalidIssuerError as exc:
            msg = f"The token was issued by another issuer; this server trusts '{self._issuer}'."
            raise Unauthenticated(msg) from exc
        except jwt.MissingRequiredClaimError as exc:
            msg = f"The token lacks the required claim '{exc.claim}'."
            raise Unauthenticated(msg) from exc
        except jwt.InvalidSignatureError as exc:
            msg = "The token's signature does not verify; request a fresh token."
            raise Unauthenticated(msg) from exc
        except jwt.InvalidAlgorithmError as exc:
            msg = f"The token's algorithm '{alg}' does not match its signing key."
            raise Unauthenticated(msg) from exc
        except jwt.PyJWTError as exc:
            msg = f"The bearer token is not valid ({type(exc).__name__})."
            raise Unauthenticated(msg) from exc
        return claims

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        settings = self._settings
        user_id = _claim(claims, settings.user_id_claim)
        if not isinstance(user_id, str | int) or isinstance(user_id, bool) or user_id == "":
            msg = f"The token lacks the user id claim '{settings.user_id_claim}'."
            raise Unauthenticated(msg)
        tenant = _claim(claims, settings.tenant_claim)
        if tenant is None:
            tenant = settings.default_tenant
        if tenant is None:
            msg = f"The token lacks the tenant claim '{settings.tenant_claim}'."
            raise Unauthenticated(msg)
        if not isinstance(tenant, str) or not 0 < len(tenant) <= 64 or set(tenant) - _TENANT_CHARS:
            msg = (
                f"The token's '{settings.tenant_claim}' claim is not a tenant id "
                "(1-64 letters, digits, '.', '_' or '-')."
            )
            raise Unauthenticated(msg)
        groups = _claim(claims, settings.roles_claim)
        if isinstance(groups, str):
            groups = groups.split()
        roles: set[Role] = set(settings.default_roles)
        if isinstance(groups, list):
            roles.update(
                settings.role_mapping[g]
                for g in groups
                if isinstance(g, str) and g in settings.role_mapping
            )
        return Principal(
            subject=oidc_subject(self._issuer, str(user_id)),
            tenant=tenant,
            roles=frozenset(roles),
            auth_method="oidc",
        )
