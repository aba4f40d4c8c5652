"""The retriever replica's worker process killed (SIGKILL) while answers stream.

The streams in flight retrieved before they began to answer, so they must finish; chats
asked during the outage answer without documents and say so (``retrieval: degraded``) or
are refused with a retryable 503; readiness names the retriever while it is gone; Serve
starts a new replica, readiness recovers and answers cite the handbook again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.chaos.traffic import (
    StreamOutcome,
    chain_verifies,
    chat,
    headers,
    stream_chat,
    until,
    wait_ready,
)
from tests.e2e.stack import RunningStack, replica_processes

pytestmark = pytest.mark.chaos

QUESTION = "Which VPN profile should I use on hotel wifi?"
STREAMS = 6
RECOVERY_S = 240.0


async def _readiness(base_url: str, timeout_s: float) -> tuple[list[dict[str, Any]], bool]:
    """Poll /readyz until it is ready again after having been not ready (or ``timeout_s``):
    every not-ready answer seen, and whether it recovered."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < deadline:
            try:
                response = await client.get(f"{base_url}/readyz")
                if response.status_code == 200 and seen:
                    return seen, True
                if response.status_code != 200:
                    seen.append({"status": response.status_code, **response.json()})
            except httpx.HTTPError as exc:
                seen.append({"status": 0, "error": type(exc).__name__})
            await asyncio.sleep(0.3)
    return seen, False


async def _asked_during_outage(client: httpx.AsyncClient, url: str, auth: dict[str, str]) -> Any:
    return await client.post(url, json=chat(QUESTION, max_tokens=8), headers=auth)


def test_killing_the_retriever_mid_stream_finishes_streams_degrades_then_cites_again(
    chaos_stack: RunningStack, chaos_keys: dict[str, str]
) -> None:
    wait_ready(chaos_stack)
    url = f"{chaos_stack.base_url}/v1/chat/completions"
    auth = headers(chaos_keys)
    (replica,) = replica_processes(chaos_stack, "retriever")
    killed_pid = replica.pid

    async def scenario() -> tuple[
        list[tuple[bool, StreamOutcome]], list[Any], list[dict[str, Any]]
    ]:
        async with httpx.AsyncClient(timeout=120) as client:
            watched = [StreamOutcome() for _ in range(STREAMS)]
            body = chat(QUESTION, max_tokens=64, ignore_eos=True)
            streams = [
                asyncio.create_task(stream_chat(client, url, auth, body, outcome))
                for outcome in watched
            ]
            began = await until(lambda: sum(o.began for o in watched) >= 2, timeout_s=120)
            assert began, f"the streams never began: {watched}"
            in_flight = [o.began for o in watched]  # answering when the replica dies
            os.kill(killed_pid, signal.SIGKILL)
            probe = asyncio.create_task(_readiness(chaos_stack.base_url, RECOVERY_S))
            asked = await asyncio.wait_for(
                asyncio.gather(*(_asked_during_outage(client, url, auth) for _ in range(3))),
                timeout=120,
            )
            outcomes = await asyncio.wait_for(asyncio.gather(*streams), timeout=300)
            not_ready, back = await probe
        # Readiness said which part was missing while it was gone, then recovered.
        assert any(
            (entry.get("checks") or {}).get("retriever", "ok") != "ok" for entry in not_ready
        ), not_ready
        assert back, f"/readyz did not recover within {RECOVERY_S:g}s: {not_ready[-3:]}"
        return list(zip(in_flight, outcomes, strict=True)), asked, not_ready

    outcomes, asked, not_ready = asyncio.run(scenario())
    print(  # shown with -rA / -s
        "streams:",
        Counter(
            f"{'in flight' if answering else 'waiting'}: {o.ending}" for answering, o in outcomes
        ),
        "asked during the outage:",
        Counter(f"{r.status_code} {r.headers.get('x-enclave-retrieval')}" for r in asked),
        f"not-ready answers: {len(not_ready)}",
    )

    # The streams in flight when the replica died finished, each with its answer; those
    # not yet answering (a busy 2-core machine) finished too or were refused cleanly.
    for answering, outcome in outcomes:
        assert outcome.done if answering else outcome.clean, outcome.ending
        assert outcome.chunks > 0 or not outcome.done, outcome.ending
    # Chats asked during the outage: answered without documents, saying so, or refused
    # with a retryable 503 — never a 500, never a hang (wait_for above).
    for response in asked:
        if response.status_code == 200:
            assert response.json()["enclave"]["retrieval"] in {"degraded", "ok"}, response.text
        else:
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) > 0
    degraded = [
        r for r in asked if r.status_code == 200 and r.json()["enclave"]["retrieval"] == "degraded"
    ]
    assert degraded, [r.text for r in asked]
    assert all(r.headers["x-enclave-retrieval"] == "degraded" for r in degraded)

    # Serve started a new replica, and answers cite the handbook again (bounded wait).
    (restarted,) = replica_processes(chaos_stack, "retriever")
    assert restarted.pid != killed_pid
    deadline = time.monotonic() + 120
    while True:
        answer = httpx.post(url, json=chat(QUESTION, max_tokens=8), headers=auth, timeout=120)
        assert answer.status_code == 200, answer.text
        lineage = answer.json()["enclave"]
        if lineage["retrieval"] == "ok" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert lineage["retrieval"] == "ok", lineage
    assert lineage["sources"][0]["document_id"] == "it-vpn", lineage["sources"]
    chain_verifies(chaos_stack, chaos_keys)
