"""Enclave on a real two-node Ray cluster: chats stream across nodes, and the node that
hosts the primary LLM is lost mid-stream and comes back. Every wait is bounded."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import openai
import pytest

from tests.chaos.traffic import chain_verifies, chat, headers, stream_chat
from tests.multinode.cluster import wait_for
from tests.multinode.conftest import MultiNode

pytestmark = pytest.mark.multinode

MODEL = "smollm2-135m-instruct"
STREAMS = 10
STREAM_BOUND_S = 150.0  # one stream, from its request to its last event, node loss included


def replicas_on(node_processes: list[Any], deployment: str) -> int:
    marker = f"ServeReplica:enclave:{deployment}"
    return sum(1 for p in node_processes if marker in " ".join(p.cmdline()))


def readiness(mn: MultiNode) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{mn.stack.base_url}/readyz", timeout=10)
    return response.status_code, response.json()


def primary_breaker(mn: MultiNode) -> float:
    text = httpx.get(f"{mn.stack.base_url}/metrics", timeout=10).text
    found = re.search(r'^enclave_circuit_state\{deployment="(?:llm_)?primary"\} (\S+)$', text, re.M)
    assert found, "no enclave_circuit_state for the primary in /metrics"
    return float(found.group(1))


def test_replicas_are_placed_by_their_custom_resources(multinode: MultiNode) -> None:
    worker = multinode.cluster.worker.processes()
    head = multinode.cluster.head.processes()
    assert replicas_on(worker, "llm_primary") == 1
    for deployment in ("api", "llm_fallback", "pii", "guard", "retriever"):
        assert replicas_on(head, deployment) == 1, deployment
        assert replicas_on(worker, deployment) == 0, deployment
    assert replicas_on(head, "llm_primary") == 0


def test_chats_stream_across_nodes_with_the_openai_client(multinode: MultiNode) -> None:
    client = openai.OpenAI(
        base_url=f"{multinode.stack.base_url}/v1", api_key=multinode.keys["staff"], timeout=120
    )
    for question in ("How do I connect to the VPN?", "Say hello to the new colleague."):
        pieces: list[str] = []
        finish = None
        for chunk in client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": question}],
            max_tokens=32,
            stream=True,
        ):
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
        assert "".join(pieces).strip(), question
        assert finish in {"stop", "length"}


async def _stream(client: httpx.AsyncClient, url: str, keys: dict[str, str]) -> dict[str, Any]:
    """One long streamed answer: how it ended (a refusal counts as an error ending)."""
    body = chat("Write a long story about the sea.", max_tokens=96, ignore_eos=True)
    outcome = await stream_chat(client, url, headers(keys), body)
    error = outcome.ending if outcome.status != 200 else outcome.error
    return {
        "status": outcome.status,
        "chunks": outcome.chunks,
        "done": outcome.done,
        "error": error,
        "broken": outcome.broken,
        "events": outcome.events,
    }


async def _bounded_stream(url: str, keys: dict[str, str]) -> Any:
    started = time.monotonic()
    request_ids: list[str] = []

    async def remember(response: httpx.Response) -> None:
        request_ids.append(response.headers.get("x-request-id", ""))

    # One client per stream, so that its request id is this stream's.
    client = httpx.AsyncClient(timeout=STREAM_BOUND_S, event_hooks={"response": [remember]})
    try:
        async with client:
            outcome = await asyncio.wait_for(_stream(client, url, keys), timeout=STREAM_BOUND_S)
        outcome["request_id"] = request_ids[0] if request_ids else ""
    except TimeoutError:
        outcome = {"done": False, "error": None, "hung": True}
    outcome["seconds"] = time.monotonic() - started
    return outcome


def test_losing_the_primary_node_mid_stream(multinode: MultiNode) -> None:
    mn = multinode
    url = f"{mn.stack.base_url}/v1/chat/completions"
    assert readiness(mn)[0] == 200

    async def scenario() -> tuple[list[dict[str, Any]], list[int]]:
        streams = [asyncio.create_task(_bounded_stream(url, mn.keys)) for _ in range(STREAMS)]
        await asyncio.sleep(4)  # the streams are under way on the primary
        killed = await asyncio.to_thread(mn.cluster.worker.kill)
        return list(await asyncio.gather(*streams)), killed

    outcomes, killed = asyncio.run(scenario())
    assert killed
    assert len(outcomes) == STREAMS
    for outcome in outcomes:
        # Finished (through the fallback when cut) or ended with an error event; never hung.
        assert not outcome.get("hung"), outcome
        assert outcome["done"] or outcome["error"], outcome
        assert outcome["seconds"] < STREAM_BOUND_S, outcome
    answered = [o for o in outcomes if o["done"]]
    assert answered, outcomes
    switched = [e for o in outcomes for e in o["events"]]
    assert switched, "no stream reported a fallback"

    # Every exchange that answered has its audit record, and the chain verifies.
    audited = _audited_request_ids(mn)
    missing = [o["request_id"] for o in answered if o["request_id"] not in audited]
    assert all(o["request_id"] for o in answered), answered
    assert not missing, missing
    chain_verifies(mn.stack, mn.keys)

    # Readiness reports the lost primary ...
    wait_for(lambda: readiness(mn)[0] == 503, 60, "/readyz reporting the lost node")
    status, body = readiness(mn)
    assert status == 503
    assert body["checks"]["llm_primary"] != "ok", body
    assert body["checks"]["llm_fallback"] == "ok", body

    # ... and recovers when the node returns and Serve reschedules the replica there.
    mn.cluster.worker.start()
    wait_for(lambda: readiness(mn)[0] == 200, 600, "/readyz after the node came back", 3)
    assert replicas_on(mn.cluster.worker.processes(), "llm_primary") == 1

    # The breaker closes again once the primary answers.
    def breaker_closed() -> bool:
        response = httpx.post(
            url,
            json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            headers=headers(mn.keys),
            timeout=60,
        )
        return response.status_code == 200 and primary_breaker(mn) == 0

    wait_for(breaker_closed, 120, "the primary's circuit breaker closing", 3)
    chain_verifies(mn.stack, mn.keys)


def _audited_request_ids(mn: MultiNode) -> set[str]:
    """The request ids of every chat exchange in the audit log."""
    seen: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, "event_type": "chat.exchange"}
        if cursor is not None:
            params["after_seq"] = cursor
        page = httpx.get(
            f"{mn.stack.base_url}/v1/audit/records",
            params=params,
            headers=headers(mn.keys, "auditor"),
            timeout=60,
        ).json()
        seen.update(str(record["event"].get("request_id")) for record in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
