"""``POST /v1/chat/completions``: the OpenAI-compatible chat endpoint."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from litestar import Controller, Request, Response, post
from litestar.response import Stream

from api.errors import problem_body
from api.exchanges import record_exchange
from api.history import LastTurn
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
from api.quality import QualityStore, is_rephrase
from api.request_ids import request_id_of
from api.request_plan import Planner
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


def _lineage_headers(run: ChatRun) -> dict[str, str]:
    headers = {
        "X-Enclave-Engine": run.engine or "none",
        "X-Enclave-Config-Version": run.plan.config_version,
        "X-Enclave-Prompt-Version": run.plan.prompt.version,
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
        *,
        pipeline: ChatPipeline,
        planner: Planner,
        principal: Principal,
        services: Services,
        quality: QualityStore,
    ) -> Response[Any]:
        """Answer a chat, as JSON or (``stream: true``) as server-sent events."""
        request_id = request_id_of(request.scope)
        runtime = await planner.runtime(principal.tenant)
        chat = validate_chat_request(
            data, services.settings.api, max_completion_tokens=runtime.max_completion_tokens
        )
        if chat.conversation_id is not None:
            # Before any work: another user's conversation does not exist for this caller.
            await services.history.owned(principal.tenant, principal.subject, chat.conversation_id)
        plan = await planner.plan(
            tenant=principal.tenant,
            subject=principal.subject,
            client=chat.client,
            language=chat.language,
            runtime=runtime,
        )
        run = await pipeline.prepare(chat, request_id, principal.tenant, plan)
        lineage = _Lineage(run)
        signals = _Signals(quality, principal, run, services)

        async def record(answer: str, last: GenerationDelta) -> None:
            metrics = services.metrics
            started = time.perf_counter()
            try:
                with span("persistence"):
                    # The turn before this one, for the rephrase signal: read here, after the
                    # answer, so that it never delays the first token (≈2 ms on SQLite).
                    previous: LastTurn | None = None
                    if chat.conversation_id is not None:
                        previous = await services.history.last_turn(
                            principal.tenant, principal.subject, chat.conversation_id
                        )
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
            _count_answer(services, run)
            signals.completed = True
            if previous is not None:
                await signals.rephrase_of(previous)
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
            scopes = quota_scopes(
                principal,
                services.settings.limits,
                user_tokens=runtime.user_tokens,
                tenant_tokens=runtime.tenant_tokens,
            )
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
            response = await _streamed(chat, run, deltas, lineage, record=record, signals=signals)
            response.headers.update(quota_headers)
            return response
        collect = asyncio.ensure_future(_collect(deltas))
        disconnect = asyncio.ensure_future(_until_disconnect(request))
        done, _ = await asyncio.wait({collect, disconnect}, return_when=asyncio.FIRST_COMPLETED)
        if collect not in done:
            collect.cancel()  # the client left: stop generating
            await asyncio.gather(collect, return_exceptions=True)
            signals.abandoned()
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
        headers = {**_lineage_headers(run), **quota_headers}
        headers["X-Enclave-Conversation-Id"] = str(lineage.extra["conversation_id"])
        return Response(content=completion, headers=headers)


def _count_answer(services: Services, run: ChatRun) -> None:
    """The answer's outcomes, per prompt version (the quality dashboard's rates)."""
    metrics, version = services.metrics, run.plan.prompt.version
    metrics.answer(version, "answered")
    if run.decision in {"refuse", "block", "escalate"}:
        metrics.answer(version, "refused")
    if run.fallback_used:
        metrics.answer(version, "fallback")
    if run.grounding.status == "degraded":
        metrics.answer(version, "degraded_retrieval")


class _Signals:
    """Implicit quality signals the server sees itself: an abandoned answer, a rephrase.

    Recording is best effort and off the answer's path: a failure is logged, never shown.
    """

    _pending: ClassVar[set[asyncio.Task[None]]] = set()

    def __init__(
        self, store: QualityStore, principal: Principal, run: ChatRun, services: Services
    ) -> None:
        self._store = store
        self._principal = principal
        self._run = run
        self._services = services
        self.completed = False
        self.failed = False

    def abandoned(self) -> None:
        """The client left before the answer was complete."""
        if self._run.fit is None:
            return  # a canned reply costs nothing and says nothing about the answer
        plan = self._run.plan
        self._spawn(
            "abandoned",
            self._run.request_id,
            None,
            plan.prompt.version,
            plan.config_version,
        )

    async def rephrase_of(self, previous: LastTurn) -> None:
        """Record a rephrase when this turn says again what the previous one asked."""
        if previous.request_id is None:
            return
        user = next((m.content for m in reversed(self._run.guard.messages) if m.role == "user"), "")
        waited = (datetime.now(UTC) - previous.answered_at).total_seconds()
        if is_rephrase(previous.user_text, user, waited):
            lineage = previous.lineage
            self._spawn(
                "rephrase",
                previous.request_id,
                None,
                lineage.get("prompt_version"),
                lineage.get("config_version"),
            )

    def _spawn(
        self,
        kind: str,
        request_id: str,
        conversation_id: str | None,
        prompt_version: str | None,
        config_version: str | None,
    ) -> None:
        task = asyncio.get_running_loop().create_task(
            self._record(kind, request_id, conversation_id, prompt_version, config_version)
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _record(
        self,
        kind: str,
        request_id: str,
        conversation_id: str | None,
        prompt_version: str | None,
        config_version: str | None,
    ) -> None:
        try:
            await self._store.record(
                tenant=self._principal.tenant,
                user_id=self._principal.subject,
                request_id=request_id,
                kind=kind,
                conversation_id=conversation_id,
                prompt_version=prompt_version,
                config_version=config_version,
                model=self._run.model,
            )
            self._services.metrics.quality_event(kind, prompt_version)
        except Exception as exc:
            _log.warning(
                "quality signal not recorded",
                extra={"kind": kind, "error_type": type(exc).__name__},
            )


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

    def __init__(self, run: ChatRun) -> None:
        self._run = run
        self.extra: dict[str, Any] = {}

    def document(self) -> dict[str, Any]:
        return {**self._run.lineage(), **self.extra}


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
    *,
    record: Callable[[str, GenerationDelta], Awaitable[None]],
    signals: _Signals,
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
        # A stream that ends before its answer was recorded, without an error of ours, was
        # left by the client (closed tab, stop button): an implicit "abandoned" signal.
        try:
            async for frame in answer_frames():
                yield frame
        finally:
            if not signals.completed and not signals.failed:
                signals.abandoned()

    async def answer_frames() -> AsyncIterator[bytes]:
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
            signals.failed = True
            for frame in pending_events():
                yield frame
            yield _error_frame(exc.title, exc.detail, exc.type_slug, exc.status_code, run)
            return
        except Exception as exc:
            signals.failed = True
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
            signals.failed = True
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

    headers = _lineage_headers(run)
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
