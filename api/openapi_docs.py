"""The served OpenAPI document tells the truth: every client error of a route is
``application/problem+json`` (RFC 9457) with a ``request_id``, as ``api/errors.py`` sends it,
and downloads (exports, event streams) name the media types they really send.

Litestar documents validation errors in its own JSON shape and streamed responses as JSON;
this rewrites those parts of the generated document once, when the app is built.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Reference, Schema
from litestar.openapi.spec.enums import OpenAPIType

from api.access import PUBLIC, ROUTE_POLICY
from api.errors import PROBLEM_JSON

__all__ = ["document_problem_responses"]

_PROBLEM = "ProblemDetails"
_CLIENT_ERRORS = {
    "400": "The request is not valid; `detail` says what to fix.",
    "404": "The resource does not exist (for this tenant).",
    "409": "The request clashes with what exists.",
    "413": "The body is larger than this server accepts.",
    "415": "The body is not in a format this route reads.",
    "503": "A dependency is down or overloaded; retry after `Retry-After` seconds.",
}
# Routes whose 200 body is not JSON: the media types they send.
_DOWNLOADS = {
    "/v1/audit/export": ("application/x-ndjson", "text/csv"),
    "/v1/audit/events": ("text/event-stream",),
    "/v1/audit/bundle": ("application/x-ndjson",),
    "/v1/conversations/{conversation_id}/export": ("text/markdown", "application/json"),
}
_AUTH_ERRORS = {
    "401": "No valid credentials (`Authorization: Bearer <API key or OIDC token>`).",
    "403": "The caller's roles do not allow this route.",
    "429": "Rate limit or token quota exceeded; retry after `Retry-After` seconds.",
}


def _problem_schema() -> Schema:
    text = Schema(type=OpenAPIType.STRING)
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["type", "title", "status", "detail", "request_id"],
        properties={
            "type": text,
            "title": text,
            "status": Schema(type=OpenAPIType.INTEGER),
            "detail": text,
            "request_id": text,
        },
        additional_properties=True,
        description="RFC 9457 problem details; extension members carry specifics.",
    )


def document_problem_responses(app: Litestar) -> None:
    """Rewrite the error responses of every operation in ``app``'s OpenAPI document."""
    document = app.openapi_schema
    components = document.components
    if components.schemas is None:
        components.schemas = {}
    components.schemas[_PROBLEM] = _problem_schema()
    problem = OpenAPIResponse(
        description="",
        content={
            PROBLEM_JSON: OpenAPIMediaType(schema=Reference(ref=f"#/components/schemas/{_PROBLEM}"))
        },
    )
    for path, item in (document.paths or {}).items():
        for method in ("get", "post", "put", "patch", "delete"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            public = ROUTE_POLICY.get((method.upper(), path)) is PUBLIC
            responses = dict(operation.responses or {})
            errors = dict(_CLIENT_ERRORS) if not public else {}
            if not public:
                errors.update(_AUTH_ERRORS)
            for status, description in errors.items():
                responses[status] = OpenAPIResponse(
                    description=description, content=problem.content
                )
            if path in _DOWNLOADS and method == "get":
                responses["200"] = OpenAPIResponse(
                    description="A download (streamed).",
                    content={
                        # Server-sent events carry one JSON record each; files are text.
                        media: OpenAPIMediaType(
                            schema=Schema()
                            if media == "text/event-stream"
                            else Schema(type=OpenAPIType.STRING)
                        )
                        for media in _DOWNLOADS[path]
                    },
                )
            operation.responses = responses
