"""JSON request bodies: the media type, emptiness and nesting checked before any route sees them.

Litestar decodes a JSON body whatever ``Content-Type`` says and lets the decoder's
``RecursionError`` on a deeply nested body become a 500. :class:`JsonRequest` is the app's
request class: every route that takes a JSON body reads it through :meth:`JsonRequest.json`,
so both checks hold for all of them. An empty body never reaches the decoder (Litestar
reports it as ``data: 'data'``): :func:`empty_body_detail` words that for the error mapper.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, HTTPException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.utils.scope.state import ScopeState

__all__ = ["JsonRequest", "empty_body_detail"]


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _required_fields(request: Request[Any, Any, Any]) -> list[str]:
    """The fields the route's body type cannot do without (msgspec structs only)."""
    field = request.route_handler.parsed_data_field
    annotation = field.annotation if field is not None else None
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return [f.encode_name for f in msgspec.structs.fields(annotation) if f.required]
    return []


def empty_body_detail(request: Request[Any, Any, Any]) -> str | None:
    """What an empty body should have held, when the route takes one and got none."""
    if request.route_handler.parsed_data_field is None:
        return None
    body = ScopeState.from_scope(request.scope).body
    if body != b"":  # unread (another parameter failed first) or not empty
        return None
    needs = _required_fields(request)
    what = "a JSON object with " + ", ".join(needs) if needs else "a JSON document"
    return f"The request body is empty; send {what} (Content-Type: application/json)."


class JsonRequest(Request[Any, Any, Any]):
    """A request whose JSON body is refused with a 4xx problem when it cannot be one."""

    async def json(self) -> Any:
        """The decoded body; 415 for another media type, 400 when nested too deep."""
        content_type = self.headers.get("content-type", "")
        if not _is_json(content_type):
            raise HTTPException(
                status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                detail=(
                    f"The body is sent as {content_type or 'no media type'!r}; this endpoint "
                    "takes JSON: send it with Content-Type: application/json."
                ),
            )
        try:
            return await super().json()
        except RecursionError:
            # msgspec decodes recursively and stops at Python's recursion limit; nothing any
            # endpoint takes is nested more than a few levels, so this is the client's error.
            raise ClientException(
                detail="The request body is nested too deeply (arrays or objects inside each "
                "other hundreds of levels deep); send the documented shape, which is a few "
                "levels deep."
            ) from None
