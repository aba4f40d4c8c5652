"""Request ids: adopted from ``X-Request-ID`` when well-formed, else minted; echoed back.

The id is assigned lazily on first use and kept in the ASGI scope, so that the problem
body, the logs and the response header agree — also for requests no route matched.
"""

from __future__ import annotations

from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

from core.ids import is_valid_request_id, new_request_id

__all__ = ["REQUEST_ID_HEADER", "echo_request_id", "request_id_of"]

REQUEST_ID_HEADER = "x-request-id"
_STATE_KEY = "enclave_request_id"


def request_id_of(scope: Scope | dict[str, Any]) -> str:
    """This request's id: the client's ``X-Request-ID`` if well-formed, else a fresh one."""
    state = scope.setdefault("state", {})
    if _STATE_KEY not in state:
        offered = ""
        for name, value in scope.get("headers", []):
            if name == REQUEST_ID_HEADER.encode():
                offered = value.decode("latin-1")
                break
        state[_STATE_KEY] = offered if is_valid_request_id(offered) else new_request_id()
    return str(state[_STATE_KEY])


async def echo_request_id(message: Message, scope: Scope) -> None:
    """``before_send`` hook: put the request id on every response."""
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id_of(scope)
