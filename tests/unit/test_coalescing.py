"""Streamed deltas coalesced per interval: the first word at once, the rest batched, nothing
lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from models.llm.base import GenerationDelta
from models.llm.coalescing import coalesce


class _Clock:
    """A hold the test releases by hand: no real time passes between batches."""

    def __init__(self) -> None:
        self.entered = 0
        self._release = asyncio.Event()

    async def hold(self, interval_s: float, finished: asyncio.Event) -> None:
        self.entered += 1
        waiter = asyncio.ensure_future(finished.wait())
        release = asyncio.ensure_future(self._release.wait())
        await asyncio.wait({waiter, release}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        release.cancel()
        self._release.clear()

    def tick(self) -> None:
        self._release.set()


def _delta(text: str, n: int, finish: str | None = None) -> GenerationDelta:
    return GenerationDelta(text, finish, prompt_tokens=7, completion_tokens=n)  # type: ignore[arg-type]


async def _source(
    queue: asyncio.Queue[GenerationDelta | None], closed: list[bool]
) -> AsyncGenerator[GenerationDelta, None]:
    try:
        while (item := await queue.get()) is not None:
            yield item
    finally:
        closed.append(True)


async def test_the_first_word_is_not_held_and_later_deltas_are_batched() -> None:
    clock = _Clock()
    queue: asyncio.Queue[GenerationDelta | None] = asyncio.Queue()
    closed: list[bool] = []
    out = coalesce(_source(queue, closed), 0.05, hold=clock.hold)
    # Until the first word is complete every delta goes at once: the reply filter shows a
    # word only when it ends, so holding "lo" would delay the first visible word.
    for text, n in (("Hel", 1), ("lo", 2), (" wor", 3)):
        queue.put_nowait(_delta(text, n))
        got = await asyncio.wait_for(anext(out), 1)
        assert (got.text, got.completion_tokens) == (text, n)
    assert clock.entered == 0  # nothing waited for the interval so far
    for text, n in (("ld", 4), (",", 5), (" all", 6)):
        queue.put_nowait(_delta(text, n))
    nxt = asyncio.ensure_future(anext(out))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not nxt.done()  # held for the interval
    clock.tick()
    second = await asyncio.wait_for(nxt, 1)
    assert (second.text, second.completion_tokens, second.prompt_tokens) == ("ld, all", 6, 7)
    queue.put_nowait(_delta("!", 7, "stop"))
    queue.put_nowait(None)
    last = await asyncio.wait_for(anext(out), 1)  # the end is not held for the interval
    assert (last.text, last.finish_reason, last.completion_tokens) == ("!", "stop", 7)
    with pytest.raises(StopAsyncIteration):
        await anext(out)
    assert closed == [True]


async def test_text_and_counts_survive_any_timing() -> None:
    queue: asyncio.Queue[GenerationDelta | None] = asyncio.Queue()
    words = [f"w{i} " for i in range(50)]
    for i, word in enumerate(words, start=1):
        queue.put_nowait(_delta(word, i, "length" if i == len(words) else None))
    queue.put_nowait(None)
    got = [d async for d in coalesce(_source(queue, []), 0.001)]
    assert "".join(d.text for d in got) == "".join(words)
    assert got[-1].finish_reason == "length"
    assert got[-1].completion_tokens == 50
    assert len(got) < 50


async def test_closing_early_cancels_the_source() -> None:
    queue: asyncio.Queue[GenerationDelta | None] = asyncio.Queue()
    closed: list[bool] = []
    out = coalesce(_source(queue, closed), 10.0)
    queue.put_nowait(_delta("a", 1))
    assert (await anext(out)).text == "a"
    await out.aclose()  # the client left: the engine's stream must end now, not in 10 s
    assert closed == [True]


async def test_a_source_error_arrives_after_the_text_before_it() -> None:
    async def failing() -> AsyncGenerator[GenerationDelta, None]:
        yield _delta("part", 1)
        raise RuntimeError("engine died")

    out = coalesce(failing(), 0.01)
    assert (await anext(out)).text == "part"
    with pytest.raises(RuntimeError, match="engine died"):
        await anext(out)


async def test_zero_interval_passes_every_delta() -> None:
    queue: asyncio.Queue[GenerationDelta | None] = asyncio.Queue()
    for i in range(5):
        queue.put_nowait(_delta(str(i), i + 1))
    queue.put_nowait(None)
    assert [d.text for d in [d async for d in coalesce(_source(queue, []), 0)]] == list("01234")
