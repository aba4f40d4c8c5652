"""The Serve HTTP proxy's request-id gate: only a short, safe ``X-Request-ID`` gets through.

Ray Serve's proxy adopts the client's ``X-Request-ID`` unchecked, echoes it on the response
and hands it to the ingress replica (its ``RequestIdMiddleware``, always the innermost
proxy middleware). A 10 kB value, a percent-encoded ``Set-Cookie`` or ``<script>`` came
back verbatim while the problem body carried an id the app minted — two ids for one
request. This gate wraps Ray's middleware: a client id that ``core.ids`` would not adopt is
replaced by a minted one before Ray reads it, so the proxy's echo, the app's problem body,
its logs, the audit record and the trace all carry the same id.

Ray loads it in each proxy from ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (the launcher
sets it before starting Ray; the Helm chart sets it on the Ray containers).
"""

from __future__ import annotations

from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from core.ids import is_valid_request_id, new_request_id

__all__ = ["CALLBACK_IMPORT_PATH", "RequestIdGate", "proxy_middlewares"]

CALLBACK_IMPORT_PATH = "serving.proxy_request_ids.proxy_middlewares"
_HEADER = b"x-request-id"


class RequestIdGate:
    """ASGI middleware: at most one ``X-Request-ID`` reaches the app, and only a safe one."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app`` (Ray's request-id middleware and the proxy behind it)."""
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Replace an unsafe or repeated client id with a minted one, then pass on."""
        if scope["type"] in ("http", "websocket"):
            headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
            offered = [value for name, value in headers if name.lower() == _HEADER]
            if offered:
                value = offered[0].decode("latin-1")
                if len(offered) > 1 or not is_valid_request_id(value):
                    value = new_request_id()
                kept = [(n, v) for n, v in headers if n.lower() != _HEADER]
                scope = {**scope, "headers": [*kept, (_HEADER, value.encode("ascii"))]}
        await self._app(scope, receive, send)


def proxy_middlewares() -> list[Any]:
    """Ray's proxy callback: the middlewares each Serve HTTP proxy wraps its app in."""
    return [Middleware(RequestIdGate)]
