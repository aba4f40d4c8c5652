"""``POST /v1/chat/completions``: the OpenAI-compatible chat endpoint."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from litestar import Controller, Request, Response, post
from litestar.response import Stream

from api.errors import problem_body
from api.exchanges import record_exchange
from api.openai_types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
)
from api.pipeline import ChatPipeline, ChatRun
from api.request_ids import request_id_of
from api.security import Principal, QuotaExceeded, QuotaLedger, Reservation, quota_scopes
from api.services import Services
from api.sse import DONE_FRAME, encode_frame
from api.validation import ValidatedChat, validate_chat_request
from core.audit import AuditUnavailable
from core.errors import EnclaveError
from core.tracing import span
from models.llm.base import GenerationDelta

__all__ = ["ChatController"]

_log = logging.getLogger("enclave.api.chat")


def _lineage_headers(run: ChatRun, config_version: str) -> dict[str, str]:
    headers = {
        "X-Enclave-Engine": run.engine or "none",
        "X-Enclave-Config-Version": config_version,
        "X-Enclave-Decision": run.decision,
        "X-Enclave-Context-Dropped": str(run.fit.dropped_messages if run.fit else 0),
        "X-Enclave-Retrieval": run.grounding.status,
    }
    if run.fallback_used:
        headers["X-Enclave-Fallback"] = run.fallback_reason or "primary-failed"
    return headers


async def _until_disconnect(request: Request[Any, Any, Any]) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class ChatController(Controller):
    """OpenAI chat completions."""

    path = "/v1/chat/completions"
    tags = ["chat"]  # noqa: RUF012 - Litestar reads this class attribute

    @post(status_code=200, summary="Create a chat completion (OpenAI-compatible)")
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: ChatCompletionRequest,
        pipeline: ChatPipeline,
        principal: Principal,
        services: Services,
    ) -> Response[Any]:
        """Answer a chat, as JSON or (``stream: true``) as server-sent events."""
        request_id = request_id_of(request.scope)
        config_version = services.config_version
        chat = validate_chat_request(data, services.settings.api)
        if chat.conversation_id is not None:
            # Before any work: another user's conversation does not exist for this caller.
            await services.history.owned(principal.tenant, principal.subject, chat.conversation_id)
        run = await pipeline.prepare(chat, request_id, principal.tenant)
        lineage = _Lineage(pipeline, run, config_version)

        async def record(answer: str, last: GenerationDelta) -> None:
            metrics = services.metrics
            started = time.perf_counter()
            try:
                with span("persistence"):
                    recorded = await record_exchange(
                        services,
                        principal,
                        chat,
                        run,
                        answer=answer,
                        last=last,
                        lineage=lineage.document(),
                    )
            except AuditUnavailable:
                metrics.audit_write_failure()
                metrics.chat(run.decision, "error")
                raise
            metrics.observe_stage("persistence", time.perf_counter() - started)
            lineage.extra.update(
                {"conversation_id": recorded.conversation_id, "audit_seq": recorded.audit_seq}
            )
            metrics.chat(run.decision, "ok")
            if run.engine:
                if run.first_token_s is not None:
                    metrics.ttft(run.engine, run.first_token_s)
                metrics.output_tokens(run.engine, last.completion_tokens)
            if run.fallback_used and run.fallback_when is not None:
                metrics.fallback(run.fallback_when, run.fallback_reason or "unknown")

        quota_headers: dict[str, str] = {}
        if run.fit is None:
            deltas = _canned(pipeline.canned_reply(run))
        else:
            # Hold the most this answer can cost before generating; settle with the real use.
            scopes = quota_scopes(principal, services.settings.limits)
            ledger = services.security.quotas
            reservation = None
            if scopes:
                tokens = len(run.fit.prompt_token_ids) + run.fit.max_tokens
                try:
                    reservation = await ledger.reserve(scopes, tokens)
                except QuotaExceeded:
                    services.metrics.rejection("quota")
                    raise
                quota_headers = _quota_headers(reservation)
            deltas = _metered(pipeline.stream(chat, run), ledger, reservation)
        if chat.stream:
            response = await _streamed(chat, run, deltas, lineage, record)
            response.headers.update(quota_headers)
            return response
        collect = asyncio.ensure_future(_collect(deltas))
        disconnect = asyncio.ensure_future(_until_disconnect(request))
        done, _ = await asyncio.wait({collect, disconnect}, return_when=asyncio.FIRST_COMPLETED)
        if collect not in done:
            collect.cancel()  # the client left: stop generating
            await asyncio.gather(collect, return_exceptions=True)
            return Response(content=b"", status_code=499)
        disconnect.cancel()
        text, last = collect.result()
        await record(text, last)  # AuditUnavailable → 503, and nothing was recorded
        completion = ChatCompletion(
            id=f"chatcmpl-{request_id}",
            created=int(time.time()),
            model=run.model,
            choices=[
                Choice(
                    index=0,
                    message=ResponseMessage(content=text),
                    finish_reason=last.finish_reason or "stop",
                )
            ],
            usage=_usage(last),
            enclave=lineage.document(),
        )
        headers = {**_lineage_headers(run, config_version), **quota_headers}
        headers["X-Enclave-Conversation-Id"] = str(lineage.extra["conversation_id"])
        return Response(content=completion, headers=headers)


def _quota_headers(reservation: Reservation) -> dict[str, str]:
    """The tightest quota after this request's reservation: what is left and when it resets."""
    tightest = min(reservation.balances, key=lambda b: b.remaining)
    return {
        "X-Quota-Remaining-Tokens": str(tightest.remaining),
        "X-Quota-Scope": tightest.scope.kind,
        "X-Quota-Resets-At": tightest.resets_at.isoformat(),
    }


async def _metered(
    deltas: AsyncGenerator[GenerationDelta, None],
    ledger: QuotaLedger,
    reservation: Reservation | None,
) -> AsyncGenerator[GenerationDelta, None]:
    """Pass the answer through; when it ends (done, failed or cancelled) settle the quota
    with the tokens really used (prompt + completion, 0 if nothing was generated)."""
    last: GenerationDelta | None = None
    try:
        async for delta in deltas:
            last = delta
            yield delta
    finally:
        await deltas.aclose()
        if reservation is not None and not reservation.settled:
            used = 0 if last is None else last.prompt_tokens + last.completion_tokens
            await ledger.settle(reservation, used)


class _Lineage:
    """Builds the response's lineage extension once the answer is complete."""

    def __init__(self, pipeline: ChatPipeline, run: ChatRun, config_version: str) -> None:
        self._pipeline = pipeline
        self._run = run
        self.config_version = config_version
        self.extra: dict[str, Any] = {}

    def document(self) -> dict[str, Any]:
        return {
            **self._run.lineage(self.config_version, self._pipeline.prompt_version),
            **self.extra,
        }


async def _canned(text: str) -> AsyncGenerator[GenerationDelta, None]:
    yield GenerationDelta(text=text, finish_reason="stop")


async def _collect(deltas: AsyncIterator[GenerationDelta]) -> tuple[str, GenerationDelta]:
    parts: list[str] = []
    last = GenerationDelta(text="")
    async for delta in deltas:
        parts.append(delta.text)
        last = delta
    return "".join(parts), last


def _usage(delta: GenerationDelta) -> Usage:
    return Usage(
        prompt_tokens=delta.prompt_tokens,
        completion_tokens=delta.completion_tokens,
        total_tokens=delta.prompt_tokens + delta.completion_tokens,
    )


async def _streamed(
    chat: ValidatedChat,
    run: ChatRun,
    deltas: AsyncGenerator[GenerationDelta, None],
    lineage: _Lineage,
    record: Callable[[str, GenerationDelta], Awaitable[None]],
) -> Response[Any]:
    # Wait for the first token before answering, so that a failure before it is a proper
    # HTTP error (with status and problem details) rather than a broken 200 stream.
    try:
        first = await anext(deltas)
    except StopAsyncIteration:
        first = GenerationDelta(text="", finish_reason="stop")
    created = int(time.time())
    chunk_id = f"chatcmpl-{run.request_id}"

    def chunk(delta: Delta, finish: str | None = None) -> bytes:
        return encode_frame(
            ChatCompletionChunk(
                id=chunk_id,
                created=created,
                model=run.model,
                choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
            )
        )

    def pending_events() -> list[bytes]:
        # What the pipeline announced mid-answer (a switch to the fallback engine): one
        # choice-less chunk each, like the lineage chunk; OpenAI clients skip them.
        out = [
            encode_frame(
                ChatCompletionChunk(
                    id=chunk_id, created=created, model=run.model, choices=[], enclave=event
                )
            )
            for event in run.events
        ]
        run.events.clear()
        return out

    async def frames() -> AsyncIterator[bytes]:
        last = first
        parts = [first.text]
        yield chunk(Delta(role="assistant", content=first.text))
        for frame in pending_events():
            yield frame
        try:
            if first.finish_reason is None:
                async for delta in deltas:
                    for frame in pending_events():
                        yield frame
                    last = delta
                    if delta.text:
                        parts.append(delta.text)
                        yield chunk(Delta(content=delta.text))
                    if delta.finish_reason is not None:
                        break
        except EnclaveError as exc:
            for frame in pending_events():
                yield frame
            yield _error_frame(exc.title, exc.detail, exc.type_slug, exc.status_code, run)
            return
        except Exception as exc:
            for frame in pending_events():
                yield frame
            _log.warning(
                "stream failed mid-answer",
                extra={"request_id": run.request_id, "error_type": type(exc).__name__},
            )
            yield _error_frame(
                "Generation interrupted",
                "The model stopped answering mid-stream. Retry the request.",
                "generation-interrupted",
                503,
                run,
            )
            return
        finally:
            await deltas.aclose()
        try:
            await record("".join(parts), last)
        except EnclaveError as exc:  # the audit log is down: the answer was not recorded
            yield _error_frame(exc.title, exc.detail, exc.type_slug, exc.status_code, run)
            return
        yield chunk(Delta(), last.finish_reason or "stop")
        if chat.include_usage:
            yield encode_frame(
                ChatCompletionChunk(
                    id=chunk_id, created=created, model=run.model, choices=[], usage=_usage(last)
                )
            )
        # The lineage rides on a last, choice-less chunk: OpenAI clients ignore the field.
        yield encode_frame(
            ChatCompletionChunk(
                id=chunk_id,
                created=created,
                model=run.model,
                choices=[],
                enclave=lineage.document(),
            )
        )
        yield DONE_FRAME

    headers = _lineage_headers(run, lineage.config_version)
    headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    if chat.conversation_id is not None:
        headers["X-Enclave-Conversation-Id"] = chat.conversation_id
    return Stream(frames(), media_type="text/event-stream", headers=headers)


def _error_frame(title: str, detail: str, slug: str, status: int, run: ChatRun) -> bytes:
    problem = problem_body(
        status=status, title=title, slug=slug, detail=detail, request_id=run.request_id
    )
    # OpenAI clients read `error.message`; the problem document rides along for our UI.
    return encode_frame(
        {
            "error": {
                "message": detail,
                "type": slug,
                "code": status,
                "request_id": run.request_id,
                "problem": problem,
            }
        }
    )
