"""What the chaos tests send and how they read the answers: chat bodies, bounded SSE
streams that record how each one ended, readiness waits and the audit chain's verdict."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.stack import RunningStack

MODEL = "smollm2-135m-instruct"


def headers(keys: dict[str, str], role: str = "staff") -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(question: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": question}], **extra}


def wait_ready(stack: RunningStack, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{stack.base_url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"/readyz did not recover within {timeout_s:g}s")


def chain_verifies(stack: RunningStack, keys: dict[str, str]) -> dict[str, Any]:
    report: dict[str, Any] = httpx.get(
        f"{stack.base_url}/v1/audit/verify", headers=headers(keys, "auditor"), timeout=60
    ).json()
    assert report["ok"] is True, report
    return report


@dataclass
class StreamOutcome:
    """How one streamed chat ended, as its client saw it."""

    status: int = 0
    request_id: str = ""
    retry_after: str | None = None
    problem: dict[str, Any] | None = None  # the 4xx/5xx body when refused before streaming
    chunks: int = 0
    done: bool = False  # ended with `data: [DONE]`
    error: str | None = None  # the SSE error event's type
    broken: str | None = None  # the connection ended with neither [DONE] nor an error event
    lineage: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # fallback notices

    @property
    def began(self) -> bool:
        return self.chunks > 0

    @property
    def ending(self) -> str:
        """How it ended, in a few words (for summaries and failure messages)."""
        if self.status != 200:
            slug = str((self.problem or {}).get("type", "")).rsplit("/", 1)[-1]
            return f"{self.status} {slug}: {(self.problem or {}).get('detail', '')}"
        if self.done:
            return "[DONE]"
        return f"error event {self.error}" if self.error else f"broken: {self.broken}"

    @property
    def clean(self) -> bool:
        """Finished, refused with a retryable problem, or ended by an error event."""
        if self.status != 200:
            return (
                self.status in {429, 503}
                and self.retry_after is not None
                and int(self.retry_after) > 0
                and bool((self.problem or {}).get("request_id"))
            )
        return self.broken is None and (self.done or self.error is not None)


async def stream_chat(
    client: httpx.AsyncClient,
    url: str,
    auth: dict[str, str],
    body: dict[str, Any],
    outcome: StreamOutcome | None = None,
) -> StreamOutcome:
    """One streamed chat read to its end; a connection that breaks off is recorded, not
    raised, so that a test can say which streams ended uncleanly. Pass ``outcome`` to
    watch the stream's progress (``chunks``) while it runs."""
    outcome = outcome if outcome is not None else StreamOutcome()
    try:
        async with client.stream("POST", url, json={**body, "stream": True}, headers=auth) as r:
            outcome.status = r.status_code
            outcome.request_id = r.headers.get("x-request-id", "")
            outcome.retry_after = r.headers.get("retry-after")
            if r.status_code != 200:
                outcome.problem = json.loads(await r.aread())
                return outcome
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    outcome.done = True
                    break
                frame = json.loads(data)
                if "error" in frame:
                    outcome.error = frame["error"]["type"]
                    break
                if frame.get("choices"):
                    outcome.chunks += 1
                elif (frame.get("enclave") or {}).get("event") == "fallback":
                    outcome.events.append(frame["enclave"])
                elif frame.get("enclave"):
                    outcome.lineage = frame["enclave"]
    except httpx.HTTPError as exc:  # e.g. RemoteProtocolError: the server cut the body off
        outcome.broken = f"{type(exc).__name__}: {exc}"
    return outcome


async def until(predicate: Any, timeout_s: float, step_s: float = 0.2) -> bool:
    """Wait until ``predicate()`` holds; False if it did not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step_s)
    return bool(predicate())
