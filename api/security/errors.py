"""Errors of authentication, authorisation, rate limits and quotas.

They extend the tree of :mod:`core.errors`::

    ClientError                       4xx  (core.errors)
    ├── Unauthenticated               401  no credentials, or credentials that do not verify
    ├── Forbidden                     403  authenticated, but without a role the action needs
    └── TooManyRequests               429  base of the two below; carries ``retry_after`` (s)
        ├── RateLimited               429  too many requests in the current window
        └── QuotaExceeded             429  the token quota of the period is used up

``api/errors.py`` turns them into problem details; :meth:`http_headers` names the headers
the response must carry (``WWW-Authenticate`` for 401, ``Retry-After`` for 429). Messages
say what to fix and never echo a credential.
"""

from __future__ import annotations

from typing import Any

from core.errors import ClientError

__all__ = ["Forbidden", "QuotaExceeded", "RateLimited", "TooManyRequests", "Unauthenticated"]


class Unauthenticated(ClientError):
    """The request carries no credentials, or ones that do not verify."""

    status_code = 401
    title = "Not authenticated"
    type_slug = "not-authenticated"

    def http_headers(self) -> dict[str, str]:
        """``WWW-Authenticate`` as RFC 6750 asks for a bearer-token API."""
        return {"WWW-Authenticate": 'Bearer realm="enclave", error="invalid_token"'}


class Forbidden(ClientError):
    """The caller is known but lacks a role the action needs."""

    status_code = 403
    title = "Forbidden"
    type_slug = "forbidden"


class TooManyRequests(ClientError):
    """The caller must slow down; it may retry after ``retry_after`` seconds."""

    status_code = 429
    title = "Too many requests"
    type_slug = "too-many-requests"

    def __init__(
        self, detail: str, *, retry_after: int, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail, extra=extra)
        self.retry_after = max(1, retry_after)

    def http_headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds (at least 1)."""
        return {"Retry-After": str(self.retry_after)}


class RateLimited(TooManyRequests):
    """More requests than the per-user or per-tenant rate allows."""

    title = "Rate limit exceeded"
    type_slug = "rate-limited"


class QuotaExceeded(TooManyRequests):
    """The token quota of the current period does not cover the request."""

    title = "Token quota exceeded"
    type_slug = "quota-exceeded"
