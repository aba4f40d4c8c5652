"""``POST /v1/chat/completions``: the OpenAI-compatible chat endpoint.

The route frames what the chat service yields (``api.chat.events``): SSE chunks when the
client streams, one JSON body when it does not. The flow itself is the service's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from litestar import Controller, Request, Response, post
from litestar.response import Stream

from api.chat import (
    ChatEvent,
    ChatService,
    ChatTurn,
    Completed,
    Failed,
    Notice,
    TextDelta,
    lineage_headers,
)
from api.chat.openai_types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
)
from api.errors import problem_body
from api.request_ids import request_id_of
from api.security import Principal
from api.sse import DONE_FRAME, encode_frame
from core.errors import EnclaveError

__all__ = ["ChatController"]


class ChatController(Controller):
    """OpenAI chat completions."""

    path = "/v1/chat/completions"
    tags = ["chat"]  # noqa: RUF012 - Litestar reads this class attribute

    @post(status_code=200, summary="Create a chat completion (OpenAI-compatible)")
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: ChatCompletionRequest,
        *,
        chat_service: ChatService,
        principal: Principal,
    ) -> Response[Any]:
        """Answer a chat, as JSON or (``stream: true``) as server-sent events."""
        turn = await chat_service.start(data, principal, request_id_of(request.scope))
        if turn.chat.stream:
            return await _streamed(turn)
        return await _collected(request, turn)


async def _until_disconnect(request: Request[Any, Any, Any]) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _collect(events: AsyncIterator[ChatEvent]) -> tuple[str, Completed]:
    parts: list[str] = []
    async for event in events:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, Failed):
            raise event.error
        elif isinstance(event, Completed):
            return "".join(parts), event
    msg = "the chat ended without completing"
    raise RuntimeError(msg)


async def _collected(request: Request[Any, Any, Any], turn: ChatTurn) -> Response[Any]:
    events = turn.events
    collect = asyncio.ensure_future(_collect(events))
    disconnect = asyncio.ensure_future(_until_disconnect(request))
    try:
        done, _ = await asyncio.wait({collect, disconnect}, return_when=asyncio.FIRST_COMPLETED)
        if collect not in done:
            collect.cancel()  # the client left: stop generating
            await asyncio.gather(collect, return_exceptions=True)
            return Response(content=b"", status_code=499)
    finally:
        disconnect.cancel()
        await events.aclose()
    text, completed = collect.result()  # an error before or during the answer raises here
    run = turn.run
    completion = ChatCompletion(
        id=f"chatcmpl-{run.request_id}",
        created=int(time.time()),
        model=run.model,
        choices=[
            Choice(
                index=0,
                message=ResponseMessage(content=text),
                finish_reason=completed.finish_reason,
            )
        ],
        usage=_usage(completed),
        enclave=completed.lineage,
    )
    # The engine and any fallback are known now that the answer is complete.
    headers = {
        **turn.headers,
        **lineage_headers(run),
        "X-Enclave-Conversation-Id": completed.conversation_id,
    }
    return Response(content=completion, headers=headers)


def _usage(completed: Completed) -> Usage:
    return Usage(
        prompt_tokens=completed.prompt_tokens,
        completion_tokens=completed.completion_tokens,
        total_tokens=completed.prompt_tokens + completed.completion_tokens,
    )


async def _streamed(turn: ChatTurn) -> Response[Any]:
    run, events = turn.run, turn.events
    # Wait for the answer to begin before answering, so that a failure before it is a proper
    # HTTP error (with status and problem details) rather than a broken 200 stream. Notices
    # (a switch to the fallback before the first token) wait with it.
    early: list[ChatEvent] = []
    try:
        async for event in events:
            if isinstance(event, Failed):
                raise event.error
            early.append(event)
            if not isinstance(event, Notice):
                break
    except BaseException:
        await events.aclose()
        raise
    created = int(time.time())
    chunk_id = f"chatcmpl-{run.request_id}"

    def chunk(
        delta: Delta | None = None,
        finish: str | None = None,
        **extra: Any,
    ) -> bytes:
        choices = [] if delta is None else [ChunkChoice(index=0, delta=delta, finish_reason=finish)]
        return encode_frame(
            ChatCompletionChunk(
                id=chunk_id, created=created, model=run.model, choices=choices, **extra
            )
        )

    async def frames() -> AsyncGenerator[bytes, None]:
        first = True
        try:
            async for event in _chain(early, events):
                if isinstance(event, TextDelta):
                    role = "assistant" if first else None
                    first = False
                    yield chunk(Delta(role=role, content=event.text))
                elif isinstance(event, Notice):
                    # Choice-less, like the lineage chunk: OpenAI clients skip them.
                    yield chunk(enclave=event.payload)
                elif isinstance(event, Failed):
                    yield _error_frame(event.error, run.request_id)
                    return
                elif isinstance(event, Completed):
                    if first:
                        yield chunk(Delta(role="assistant", content=""))
                    yield chunk(Delta(), event.finish_reason)
                    if turn.chat.include_usage:
                        yield chunk(usage=_usage(event))
                    # The lineage rides on a last, choice-less chunk: clients ignore the field.
                    yield chunk(enclave=event.lineage)
                    yield DONE_FRAME
        finally:
            await events.aclose()

    headers = {**turn.headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Stream(frames(), media_type="text/event-stream", headers=headers)


async def _chain(
    early: list[ChatEvent], rest: AsyncIterator[ChatEvent]
) -> AsyncGenerator[ChatEvent, None]:
    for event in early:
        yield event
    async for event in rest:
        yield event


def _error_frame(error: EnclaveError, request_id: str) -> bytes:
    problem = problem_body(
        status=error.status_code,
        title=error.title,
        slug=error.type_slug,
        detail=error.detail,
        request_id=request_id,
    )
    # OpenAI clients read `error.message`; the problem document rides along for our UI.
    return encode_frame(
        {
            "error": {
                "message": error.detail,
                "type": error.type_slug,
                "code": error.status_code,
                "request_id": request_id,
                "problem": problem,
            }
        }
    )
