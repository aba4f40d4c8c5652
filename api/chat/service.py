"""The chat service: owns one chat request from validation to its audit record.

``start`` does everything that may still refuse the request with an HTTP error — validate,
check the conversation is the caller's, plan, guards, retrieval, prompt, quota — and returns
a ``ChatTurn`` whose ``events`` yield the answer as it happens (``api.chat.events``). The
route only frames those events as SSE chunks or one JSON body. The exchange and its audit
record commit before ``Completed`` is yielded (ADR 0006), so before the stream's ``[DONE]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from api.chat.events import ChatEvent, Completed, Failed, Notice, TextDelta
from api.chat.exchanges import record_exchange
from api.chat.openai_types import ChatCompletionRequest
from api.chat.pipeline import ChatPipeline, ChatRun
from api.chat.request_plan import Planner
from api.chat.signals import QualitySignals
from api.chat.validation import ValidatedChat, validate_chat_request
from api.security import Principal, QuotaExceeded, Reservation, quota_scopes
from api.services import Services
from api.stores.history import LastTurn
from api.stores.quality import QualityStore
from core.audit import STORE_ERRORS, AuditUnavailable
from core.errors import EnclaveError, GenerationInterrupted
from core.tracing import span
from models.llm.base import GenerationDelta

__all__ = ["ChatService", "ChatTurn"]

_log = logging.getLogger("enclave.api.chat")


@dataclass(slots=True)
class ChatTurn:
    """A started chat: the validated request, its run, response headers and its events."""

    chat: ValidatedChat
    run: ChatRun
    headers: dict[str, str]
    events: AsyncGenerator[ChatEvent, None] = field(repr=False)


class ChatService:
    """Runs chat requests: the pipeline's stages, quota, recording and quality signals."""

    def __init__(
        self,
        *,
        pipeline: ChatPipeline,
        planner: Planner,
        services: Services,
        quality: QualityStore,
    ) -> None:
        self._pipeline = pipeline
        self._planner = planner
        self._services = services
        self._quality = quality

    async def start(
        self, data: ChatCompletionRequest, principal: Principal, request_id: str
    ) -> ChatTurn:
        """Everything before the answer; raises the client's errors (4xx) and overload (503)."""
        services = self._services
        runtime = await self._planner.runtime(principal.tenant)
        chat = validate_chat_request(
            data, services.settings.api, max_completion_tokens=runtime.max_completion_tokens
        )
        if chat.conversation_id is not None:
            # Before any work: another user's conversation does not exist for this caller.
            await services.history.owned(principal.tenant, principal.subject, chat.conversation_id)
        plan = await self._planner.plan(
            tenant=principal.tenant,
            subject=principal.subject,
            client=chat.client,
            language=chat.language,
            runtime=runtime,
        )
        run = await self._pipeline.prepare(chat, request_id, principal.tenant, plan)
        headers = lineage_headers(run)
        if chat.conversation_id is not None:
            headers["X-Enclave-Conversation-Id"] = chat.conversation_id
        reservation = None
        if run.fit is not None:
            # Hold the most this answer can cost before generating; settle with the real use.
            scopes = quota_scopes(
                principal,
                services.settings.limits,
                user_tokens=runtime.user_tokens,
                tenant_tokens=runtime.tenant_tokens,
            )
            if scopes:
                tokens = len(run.fit.prompt_token_ids) + run.fit.max_tokens
                try:
                    reservation = await services.security.quotas.reserve(scopes, tokens)
                except QuotaExceeded:
                    services.metrics.rejection("quota")
                    raise
                if reservation.balances:  # none: admitted unmetered (store down, fail_open)
                    headers.update(_quota_headers(reservation))
        events = self._events(chat, run, principal, reservation)
        return ChatTurn(chat, run, headers, events)

    async def _deltas(
        self, chat: ValidatedChat, run: ChatRun, reservation: Reservation | None
    ) -> AsyncGenerator[GenerationDelta | Notice, None]:
        """The pipeline's answer (or its canned reply); the quota settles with the tokens
        really used when it ends — done, failed or cancelled (0 if nothing was generated)."""
        if run.fit is None:
            yield GenerationDelta(text=self._pipeline.canned_reply(run), finish_reason="stop")
            return
        last: GenerationDelta | None = None
        stream = self._pipeline.stream(chat, run)
        try:
            async for item in stream:
                if isinstance(item, GenerationDelta):
                    last = item
                yield item
        finally:
            await stream.aclose()
            if reservation is not None and not reservation.settled:
                used = 0 if last is None else last.prompt_tokens + last.completion_tokens
                await self._services.security.quotas.settle(reservation, used)

    async def _events(
        self,
        chat: ValidatedChat,
        run: ChatRun,
        principal: Principal,
        reservation: Reservation | None,
    ) -> AsyncGenerator[ChatEvent, None]:
        signals = QualitySignals(self._quality, self._services.metrics, principal, run)
        parts: list[str] = []
        last = GenerationDelta(text="")
        begun = ended = False
        try:
            try:
                async with aclosing(self._deltas(chat, run, reservation)) as deltas:
                    async for item in deltas:
                        begun = True
                        if isinstance(item, Notice):
                            yield item
                            continue
                        last = item
                        if item.text:
                            parts.append(item.text)
                            yield TextDelta(item.text)
                        if item.finish_reason is not None:
                            break
            except EnclaveError as exc:
                if not begun:
                    raise  # before the answer began: a proper HTTP error
                ended = True
                yield Failed(exc)
                return
            except Exception as exc:
                if not begun:
                    raise
                ended = True
                _log.warning(
                    "stream failed mid-answer",
                    extra={"request_id": run.request_id, "error_type": type(exc).__name__},
                )
                yield Failed(_interrupted())
                return
            try:
                conversation_id, lineage, previous = await self._record(
                    chat, run, principal, parts, last
                )
            except EnclaveError as exc:  # the audit log is down: the answer was not recorded
                ended = True
                if not begun:
                    raise
                yield Failed(exc)
                return
            ended = True
            if previous is not None:
                # Before Completed: a JSON client's route stops reading at Completed.
                signals.rephrase_of(previous)
            yield Completed(
                finish_reason=last.finish_reason or "stop",
                prompt_tokens=last.prompt_tokens,
                completion_tokens=last.completion_tokens,
                lineage=lineage,
                conversation_id=conversation_id,
            )
        finally:
            # An answer that ends before it was recorded, without an error of ours, was left
            # by the client (closed tab, stop button): an implicit "abandoned" signal.
            if not ended:
                signals.abandoned()

    async def _record(
        self,
        chat: ValidatedChat,
        run: ChatRun,
        principal: Principal,
        parts: list[str],
        last: GenerationDelta,
    ) -> tuple[str, dict[str, Any], LastTurn | None]:
        """Write the exchange and its audit record; count the answer's metrics. Also returns
        the conversation's turn before this one (for the rephrase signal)."""
        services = self._services
        metrics = services.metrics
        started = time.perf_counter()
        lineage = run.lineage()
        previous: LastTurn | None = None
        try:
            with span("persistence"):
                # Read here, after the answer, so that it never delays the first token.
                if chat.conversation_id is not None:
                    previous = await self._previous_turn(principal, chat.conversation_id)
                recorded = await record_exchange(
                    services, principal, chat, run, answer="".join(parts), last=last,
                    lineage={**lineage},
                )  # fmt: skip
        except AuditUnavailable:
            metrics.audit_write_failure()
            metrics.chat(run.decision, "error")
            raise
        metrics.observe_stage("persistence", time.perf_counter() - started)
        lineage.update(
            {"conversation_id": recorded.conversation_id, "audit_seq": recorded.audit_seq}
        )
        metrics.chat(run.decision, "ok")
        _count_answer(services, run)
        if run.engine:
            if run.first_token_s is not None:
                metrics.ttft(run.engine, run.first_token_s)
            metrics.output_tokens(run.engine, last.completion_tokens)
        if run.fallback_used and run.fallback_when is not None:
            metrics.fallback(run.fallback_when, run.fallback_reason or "unknown")
        return recorded.conversation_id, lineage, previous

    async def _previous_turn(self, principal: Principal, conversation_id: str) -> LastTurn | None:
        """The conversation's turn before this one, or None when the store cannot give it.

        Only the rephrase signal needs it. A store failure here (the database restarting
        while the answer streamed) must not escape the stream as a raw database error,
        which would cut the answer off with neither ``[DONE]`` nor an error event: the
        signal is skipped, and the write that follows records the exchange or reports
        ``AuditUnavailable`` as an error event.
        """
        try:
            return await self._services.history.last_turn(
                principal.tenant, principal.subject, conversation_id
            )
        except STORE_ERRORS as exc:
            _log.warning(
                "previous turn unreadable; rephrase signal skipped",
                extra={"error_type": type(exc).__name__},
            )
            return None


def lineage_headers(run: ChatRun) -> dict[str, str]:
    """The response headers that say how the answer was made."""
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


def _interrupted() -> EnclaveError:
    return GenerationInterrupted("The model stopped answering mid-stream. Retry the request.")


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


def _quota_headers(reservation: Reservation) -> dict[str, str]:
    """The tightest quota after this request's reservation: what is left and when it resets."""
    tightest = min(reservation.balances, key=lambda b: b.remaining)
    return {
        "X-Quota-Remaining-Tokens": str(tightest.remaining),
        "X-Quota-Scope": tightest.scope.kind,
        "X-Quota-Resets-At": tightest.resets_at.isoformat(),
    }
