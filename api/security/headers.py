"""Security headers on every response, and CORS limited to configured origins.

The Content-Security-Policy lets pages talk to their own origin only. The one exception is
the portal page when the organisation's OIDC provider signs users in: the page exchanges
the authorization code at the provider's token endpoint itself (a public client with PKCE),
so that page -- and only that page -- also may ``connect-src`` to the token endpoint's
origin. The portal's handler asks for it with :func:`allow_connect_to`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

__all__ = [
    "HSTS",
    "SECURITY_HEADERS",
    "allow_connect_to",
    "content_security_policy",
    "cors_config",
    "origin_of",
    "security_headers",
]

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src {connect}; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Where a handler leaves the extra connect-src origin for the hook (the request's own state).
_CONNECT_KEY = "enclave.csp_connect_src"


def content_security_policy(connect_origin: str | None = None) -> str:
    """The CSP: everything from 'self' only; ``connect_origin`` is added to connect-src."""
    connect = "'self'" if connect_origin is None else f"'self' {connect_origin}"
    return _CSP.format(connect=connect)


# The portal loads only its own scripts and styles; nothing may frame it.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": content_security_policy(),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=63072000; includeSubDomains"


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an http(s) URL, as a CSP source expression."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        msg = f"not an http(s) URL: {url!r}"
        raise ValueError(msg)
    host = parts.hostname
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"


def allow_connect_to(scope: Scope, url: str) -> None:
    """Let this one response's page also connect to ``url``'s origin (nothing else changes)."""
    state = scope.setdefault("state", {})
    state[_CONNECT_KEY] = origin_of(url)


def _behind_tls(scope: Scope) -> bool:
    if scope.get("scheme") == "https":
        return True
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-proto":
            return value.split(b",")[0].strip().lower() == b"https"
    return False


async def security_headers(message: Message, scope: Scope) -> None:
    """``before_send`` hook: the headers above, and HSTS when the client came over TLS."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    for name, value in SECURITY_HEADERS.items():
        headers[name] = value
    connect = scope.get("state", {}).get(_CONNECT_KEY)
    if isinstance(connect, str):
        headers["Content-Security-Policy"] = content_security_policy(origin_of(connect))
    if _behind_tls(scope):
        headers["Strict-Transport-Security"] = HSTS


def cors_config(origins: list[str]) -> CORSConfig | None:
    """CORS for the configured origins only; None (no CORS headers at all) when empty."""
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After", "RateLimit-Remaining"],
        allow_credentials=False,
        max_age=600,
    )
