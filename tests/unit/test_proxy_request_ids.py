"""Ray Serve's proxy with Enclave's request-id gate: one safe id, the same on both sides.

Ray's own ``RequestIdMiddleware`` (the real one, applied as the proxy applies it) stands in
front of an app that records the id it is handed and answers a problem with that id, as the
ingress replica's ``request_id_of`` does.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from ray.serve._private.http_util import _apply_middlewares
from starlette.types import Receive, Scope, Send

from core.ids import is_valid_request_id
from serving.proxy_request_ids import proxy_middlewares


async def _replica(scope: Scope, receive: Receive, send: Send) -> None:
    received = [v.decode("latin-1") for n, v in scope["headers"] if n == b"x-request-id"]
    body = json.dumps({"request_id": received[-1], "seen": received}).encode()
    await send({"type": "http.response.start", "status": 400, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def _call(request_id: str | None, *, gate: bool = True) -> tuple[list[str], Any]:
    app = _apply_middlewares(_replica, proxy_middlewares() if gate else [])
    headers = [] if request_id is None else [("x-request-id", request_id)]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        response = await client.get("/v1/models", headers=headers)
    return response.headers.get_list("x-request-id"), response.json()


HOSTILE = [
    "x" * 10_000,
    "a%0d%0aSet-Cookie:%20session=evil",
    "<script>alert(1)</script>",
    "short",
    "has space inside it",
]


@pytest.mark.parametrize("offered", HOSTILE, ids=["10kB", "set-cookie", "script", "short", "space"])
async def test_an_unsafe_client_id_is_replaced_and_header_and_body_agree(offered: str) -> None:
    echoed, body = await _call(offered)
    assert len(echoed) == 1
    assert echoed[0] != offered
    assert echoed[0].startswith("req_")
    assert body["seen"] == echoed  # the replica got exactly the id the client is told
    assert body["request_id"] == echoed[0]


async def test_without_the_gate_ray_echoes_the_hostile_id() -> None:
    # What the gate is for: Ray's proxy alone echoes a 10 kB id verbatim.
    echoed, _ = await _call("x" * 10_000, gate=False)
    assert echoed == ["x" * 10_000]


async def test_a_safe_client_id_is_kept_end_to_end() -> None:
    echoed, body = await _call("trace-4f2a9c01")
    assert echoed == ["trace-4f2a9c01"]
    assert body["request_id"] == "trace-4f2a9c01"


async def test_no_client_id_gets_one_that_the_app_adopts() -> None:
    echoed, body = await _call(None)
    assert len(echoed) == 1
    assert body["request_id"] == echoed[0]
    assert is_valid_request_id(echoed[0])  # Ray's minted uuid passes the app's check
