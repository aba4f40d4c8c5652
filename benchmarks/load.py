"""A closed-loop load generator for OpenAI-compatible streaming chat endpoints.

The same client code drives the raw vLLM server and Enclave, so that whatever the client
costs, both sides pay it. Each request streams with ``stream_options.include_usage`` so the
server's own ``usage.prompt_tokens`` is recorded per request (the equal-work check), and
Enclave's lineage chunk (``enclave``), when present, is kept for the TTFT breakdown.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["ChatJob", "LevelResult", "RequestResult", "run_level"]


@dataclass(frozen=True, slots=True)
class ChatJob:
    """One request to send: its messages, under a key that names the question."""

    key: str
    messages: tuple[dict[str, str], ...]


@dataclass(slots=True)
class RequestResult:
    """What one streamed request measured."""

    key: str
    ok: bool
    ttft_s: float | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    chunks: int = 0
    error: str = ""
    lineage: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class LevelResult:
    """One concurrency level: every request's result and the level's wall time."""

    concurrency: int
    duration_s: float
    requests: list[RequestResult]

    @property
    def output_tokens(self) -> int:
        """Output tokens of the requests that finished."""
        return sum(r.completion_tokens for r in self.requests if r.ok)

    @property
    def output_throughput(self) -> float:
        """Output tokens per second of wall time."""
        return self.output_tokens / self.duration_s if self.duration_s else 0.0


async def _one(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    model: str,
    job: ChatJob,
    max_tokens: int,
) -> RequestResult:
    body = {
        "model": model,
        "messages": list(job.messages),
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    result = RequestResult(job.key, ok=False)
    started = time.perf_counter()
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                result.error = f"HTTP {response.status_code}: {text[:200]}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                payload = line[6:]
                if payload == "[DONE]":
                    result.ok = result.completion_tokens > 0
                    break
                chunk = json.loads(payload)
                if "error" in chunk:
                    result.error = str(chunk["error"].get("message", chunk["error"]))[:200]
                    break
                for choice in chunk.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        result.chunks += 1
                        if result.ttft_s is None:
                            result.ttft_s = time.perf_counter() - started
                usage = chunk.get("usage")
                if usage:
                    result.prompt_tokens = int(usage["prompt_tokens"])
                    result.completion_tokens = int(usage["completion_tokens"])
                if chunk.get("enclave") and "timings_ms" in chunk["enclave"]:
                    result.lineage = chunk["enclave"]
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        result.latency_s = time.perf_counter() - started
    return result


async def _level(
    base_url: str,
    api_key: str,
    model: str,
    jobs: Sequence[ChatJob],
    concurrency: int,
    max_tokens: int,
    warmups: int,
) -> LevelResult:
    url = f"{base_url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:
        for job in jobs[:warmups]:
            await _one(client, url, headers, model, job, max_tokens)
        queue: asyncio.Queue[ChatJob] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)
        results: list[RequestResult] = []

        async def worker() -> None:
            while True:
                try:
                    job = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                results.append(await _one(client, url, headers, model, job, max_tokens))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        duration = time.perf_counter() - started
    return LevelResult(concurrency, duration, results)


def run_level(
    base_url: str,
    api_key: str,
    model: str,
    jobs: Sequence[ChatJob],
    *,
    concurrency: int,
    max_tokens: int,
    warmups: int = 2,
) -> LevelResult:
    """Send ``jobs`` with ``concurrency`` streams at once (after ``warmups`` requests)."""
    return asyncio.run(_level(base_url, api_key, model, jobs, concurrency, max_tokens, warmups))
