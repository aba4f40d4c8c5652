"""Coalesce an engine's streamed deltas: the first at once, later ones batched per interval.

Every delta that crosses a Ray Serve handle is an object of its own (and, after the API, an
SSE frame through Serve's proxy): per token that is most of the serving stack's CPU at high
concurrency. Ray Serve LLM batches its stream the same way. Deltas go at once until the
text sent holds a whole word -- the API's reply filter shows a word only once it is complete,
so holding its second token for an interval would add that interval to the time to first
visible token -- and the last one goes as soon as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from models.llm.base import GenerationDelta

__all__ = ["Hold", "coalesce", "merge_deltas"]

# Waits until more deltas should be sent: returns after the interval, or earlier when the
# ``finished`` event is set (the source ended). Injected by tests to control time.
Hold = Callable[[float, asyncio.Event], Awaitable[None]]

# A word followed by white space: the first word is complete.
_WORD_END = re.compile(r"\S\s")


async def _hold(interval_s: float, finished: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(interval_s):
            await finished.wait()


def merge_deltas(deltas: list[GenerationDelta]) -> GenerationDelta:
    """One delta for several consecutive ones (token counts are cumulative: the last's)."""
    if len(deltas) == 1:
        return deltas[0]
    last = deltas[-1]
    return GenerationDelta(
        text="".join(d.text for d in deltas),
        finish_reason=last.finish_reason,
        prompt_tokens=last.prompt_tokens,
        completion_tokens=last.completion_tokens,
    )


async def coalesce(
    deltas: AsyncIterator[GenerationDelta], interval_s: float, *, hold: Hold = _hold
) -> AsyncGenerator[GenerationDelta, None]:
    """Pass ``deltas`` through, merging those that arrive within ``interval_s`` of the last
    one sent, once the text sent holds a complete word (before that each delta goes at
    once). ``interval_s <= 0`` passes every delta as it is. Closing the result (or
    cancelling its consumer) cancels the source, which aborts the request in the engine."""
    if interval_s <= 0:
        async for delta in deltas:
            yield delta
        return
    pending: list[GenerationDelta] = []
    arrived = asyncio.Event()
    finished = asyncio.Event()
    failure: list[BaseException] = []

    async def pump() -> None:
        try:
            async for delta in deltas:
                pending.append(delta)
                arrived.set()
        except Exception as exc:
            failure.append(exc)
        finally:
            finished.set()
            arrived.set()

    task = asyncio.get_running_loop().create_task(pump())
    opening: str | None = ""  # the text sent until its first word is complete (then None)
    try:
        while True:
            await arrived.wait()
            arrived.clear()
            if pending:
                batch = pending[:]
                pending.clear()
                merged = merge_deltas(batch)
                if opening is not None:
                    opening += merged.text
                    if _WORD_END.search(opening):
                        opening = None
                yield merged
            if finished.is_set() and not pending:
                if failure:
                    raise failure[0]
                return
            if opening is None:
                # Later deltas gather for one interval (or until the source ends).
                await hold(interval_s, finished)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        close = getattr(deltas, "aclose", None)
        if close is not None:
            await close()
