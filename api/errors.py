"""The one place that turns errors into HTTP: RFC 9457 problem details with a request id."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import SQLAlchemyError

from api.request_body import empty_body_detail
from api.request_ids import request_id_of
from core.errors import EnclaveError

__all__ = ["PROBLEM_JSON", "exception_handlers", "problem_body"]

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://enclave.invalid/problems/"
_log = logging.getLogger("enclave.api")

_HTTP_TITLES = {
    400: ("Invalid request", "invalid-request"),
    401: ("Not authenticated", "not-authenticated"),
    403: ("Forbidden", "forbidden"),
    404: ("Not found", "not-found"),
    405: ("Method not allowed", "method-not-allowed"),
    413: ("Request body too large", "payload-too-large"),
    415: ("Unsupported media type", "unsupported-media-type"),
    429: ("Too many requests", "rate-limited"),
    503: ("Service unavailable", "service-unavailable"),
}


def problem_body(
    *, status: int, title: str, slug: str, detail: str, request_id: str, **extra: Any
) -> dict[str, Any]:
    """The problem-details document (RFC 9457) Enclave returns for every error."""
    body: dict[str, Any] = {
        "type": _TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": request_id,
    }
    body.update(extra)
    return body


def _respond(body: dict[str, Any], headers: dict[str, str]) -> Response[Any]:
    return Response(
        content=body,
        status_code=int(body["status"]),
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _enclave_error(request: Request[Any, Any, Any], exc: EnclaveError) -> Response[Any]:
    headers = exc.http_headers()
    if exc.status_code >= 500:
        _log.warning("request failed: %s", exc.title, extra={"error_type": type(exc).__name__})
    body = problem_body(
        status=exc.status_code,
        title=exc.title,
        slug=exc.type_slug,
        detail=exc.detail,
        request_id=request_id_of(request.scope),
        **exc.extra,
    )
    return _respond(body, headers)


def _validation_detail(exc: ValidationException) -> tuple[str, list[dict[str, Any]]]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    problems = [
        {"field": str(item.get("key", "")), "message": str(item.get("message", ""))}
        for item in extra
        if isinstance(item, dict)
    ]
    if problems:
        listed = "; ".join(f"{p['field'] or 'body'}: {p['message']}" for p in problems)
        return f"The request body is not valid: {listed}.", problems
    return f"The request body is not valid: {exc.detail}.", problems


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    title, slug = _HTTP_TITLES.get(status, ("Error", "error"))
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and (empty := empty_body_detail(request)):
        detail = empty
        extra["errors"] = [{"field": "body", "message": "is empty"}]
    elif isinstance(exc, ValidationException):
        detail, problems = _validation_detail(exc)
        extra["errors"] = problems
    elif status == 404:
        detail = f"No route matches {request.method} {request.url.path}. See /schema for the API."
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}."
    elif status == 413:
        detail = "The request body is larger than this server accepts; send a smaller body."
    else:
        detail = exc.detail
    body = problem_body(
        status=status,
        title=title,
        slug=slug,
        detail=detail,
        request_id=request_id_of(request.scope),
        **extra,
    )
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "retry-after"}
    return _respond(body, headers)


def _store_unavailable(request: Request[Any, Any, Any], exc: SQLAlchemyError) -> Response[Any]:
    # The SQL store is down or unreachable (connection refused, dropped, pool exhausted):
    # the client can do nothing but retry, so 503, not 500.
    _log.warning("database unavailable", extra={"error_type": type(exc).__name__})
    body = problem_body(
        status=503,
        title="Database unavailable",
        slug="database-unavailable",
        detail="The database cannot be reached right now; nothing was changed. Retry shortly.",
        request_id=request_id_of(request.scope),
    )
    return _respond(body, {"Retry-After": "5"})


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    request_id = request_id_of(request.scope)
    _log.exception("unhandled error", extra={"error_type": type(exc).__name__})
    body = problem_body(
        status=HTTP_500_INTERNAL_SERVER_ERROR,
        title="Internal error",
        slug="internal-error",
        detail=f"Something went wrong on our side. Quote request id {request_id} "
        "when reporting it.",
        request_id=request_id,
    )
    return _respond(body, {})


exception_handlers: dict[Any, Any] = {
    EnclaveError: _enclave_error,
    SQLAlchemyError: _store_unavailable,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
