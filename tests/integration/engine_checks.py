"""Behaviour every LLMEngine backend must show, run against each real engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from models.llm.base import (
    ChatMessage,
    GenerationDelta,
    GenerationRequest,
    LLMEngine,
    SamplingOptions,
)

QUESTION = (
    ChatMessage("system", "You are a concise assistant."),
    ChatMessage("user", "What is the capital of France?"),
)


async def collect(engine: LLMEngine, request: GenerationRequest) -> list[GenerationDelta]:
    return [delta async for delta in engine.generate(request)]


async def streams_a_chat(engine: LLMEngine) -> None:
    request = GenerationRequest(
        "it-stream", QUESTION, SamplingOptions(max_tokens=24, temperature=0)
    )
    deltas = await collect(engine, request)
    text = "".join(d.text for d in deltas)
    assert "Paris" in text
    assert len([d for d in deltas if d.text]) > 1, "the answer should arrive in several pieces"
    last = deltas[-1]
    assert last.finish_reason in {"stop", "length"}
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert last.prompt_tokens == engine.count_prompt_tokens(QUESTION)
    assert 0 < last.completion_tokens <= 24


async def respects_max_tokens(engine: LLMEngine) -> None:
    story = (ChatMessage("user", "Tell me a long story about a dragon."),)
    deltas = await collect(
        engine, GenerationRequest("it-len", story, SamplingOptions(max_tokens=5, temperature=0))
    )
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].completion_tokens == 5


async def honours_stop_strings(engine: LLMEngine) -> None:
    count = (ChatMessage("user", "Count from 1 to 10, separated by commas."),)
    deltas = await collect(
        engine,
        GenerationRequest(
            "it-stop", count, SamplingOptions(max_tokens=40, temperature=0, stop=("5",))
        ),
    )
    text = "".join(d.text for d in deltas)
    assert "5" not in text
    assert "4" in text
    assert deltas[-1].finish_reason == "stop"


async def cancelling_frees_the_engine(engine: LLMEngine, busy: Callable[[], int]) -> None:
    story = (ChatMessage("user", "Write a very long essay about the history of Europe."),)
    stream = engine.generate(
        GenerationRequest("it-cancel", story, SamplingOptions(max_tokens=1000, temperature=0.8))
    )
    received = 0
    async for _ in stream:
        received += 1
        if received == 3:
            break
    assert busy() == 1, "the request should still be running before it is cancelled"
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(50):
        if busy() == 0:
            break
        await asyncio.sleep(0.1)
    assert busy() == 0
    # The engine still serves after a cancellation.
    await streams_a_chat(engine)
