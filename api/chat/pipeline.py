"""The chat stages of one request: guards, retrieval, prompt assembly and context fit,
generation with fallback, the reply filter."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from api.chat.context import ContextFit, fit_context
from api.chat.events import Notice
from api.chat.grounding import Grounding, RetrievalLimits, RetrievalStage
from api.chat.guarding import GuardOutcome, GuardStage
from api.chat.repetition import RepetitionGuard
from api.chat.reply_filter import ReplyFilter
from api.chat.request_plan import RequestPlan
from api.chat.resilience import CircuitBreaker, with_deadlines
from api.chat.validation import ValidatedChat
from api.services import LLMClient, Services
from core.errors import ContextTooLong, GenerationFailed, ServiceUnavailable, UnknownModel
from core.prompts import system_message
from core.runtime_overrides import Decoding, Engine
from core.tracing import current_trace_id, span
from models.llm.base import ChatMessage, GenerationDelta, GenerationRequest

__all__ = ["ChatPipeline", "ChatRun"]
_NOT_RETRIEVED = Grounding("skipped", reason="not an answer from documents")

_log = logging.getLogger("enclave.pipeline")


@dataclass(slots=True)
class ChatRun:
    """One request's progress: what ran, for the response and its lineage."""

    request_id: str
    model: str
    guard: GuardOutcome
    plan: RequestPlan
    fit: ContextFit | None = None
    engine: str = ""
    fallback_used: bool = False
    fallback_reason: str | None = None
    fallback_when: Literal["before_first_token", "mid_stream"] | None = None
    trace_id: str | None = field(default_factory=current_trace_id)
    reply_filter: ReplyFilter | None = None
    grounding: Grounding = _NOT_RETRIEVED
    started: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The system prompt as rendered for this request (the reply filter looks for leaks of it).
    system_text: str = ""
    # The penalties the client set (``ValidatedChat.requested_decoding``); every engine
    # answers with them instead of its configured ones.
    requested_decoding: dict[str, float] = field(default_factory=dict)

    @property
    def decision(self) -> str:
        """What the guards decided: answer, refuse, escalate, block, …"""
        return self.guard.decision

    def decoding_for(self, engine: Engine) -> Decoding:
        """The penalties ``engine`` answers this request with: its configured ones, with
        the client's own where the request set them."""
        return replace(self.plan.runtime.decoding_for(engine), **self.requested_decoding)

    def lineage(self) -> dict[str, Any]:
        """What explains this response; identifiers, decisions and counts only (no text)."""
        verdict = self.guard.verdict
        masked = dict(self.reply_filter.masked) if self.reply_filter else {}
        return {
            "request_id": self.request_id,
            "model": self.model,
            "engine": self.engine or None,
            "fallback": self.fallback_reason if self.fallback_used else None,
            "fallback_when": self.fallback_when if self.fallback_used else None,
            "trace_id": self.trace_id,
            **self.plan.lineage(),
            # Per engine, as applied: the engine(s) that answered (engine, fallback) used
            # theirs; "decoding_requested" tells which of the values the client chose.
            "decoding": {
                engine: self.decoding_for(engine).as_dict() for engine in self.plan.runtime.decoding
            },
            "decoding_requested": dict(self.requested_decoding),
            "decision": self.decision,
            "guard": {
                "intent": verdict.intent,
                "intent_confidence": verdict.intent_confidence,
                "injection": verdict.injection,
                "injection_score": verdict.injection_score,
                "injection_rules": list(verdict.injection_rules),
                "reply_cut_for_leak": bool(self.reply_filter and self.reply_filter.leaked),
                "reply_cut_for_repetition": bool(self.reply_filter and self.reply_filter.looped),
            },
            "pii": {
                "protected": self.guard.protected,
                "masked_in_reply": masked,
                "unissued_in_reply": dict(self.reply_filter.unissued) if self.reply_filter else {},
            },
            "entities": self.guard.entities,
            "context": {"dropped_messages": self.fit.dropped_messages if self.fit else 0},
            "retrieval": self.grounding.status,
            "retrieval_detail": self.grounding.lineage(),
            "sources": self.grounding.citations(),
            "timings_ms": {**self.guard.timings_ms, **self.grounding.timings_ms, **self.timings_ms},
        }


class ChatPipeline:
    """The per-request composition of the chat stages."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._settings = services.settings
        self._served = services.primary.info().model
        self._guards = GuardStage(services.guard, services.settings.guard)
        self._retrieval = RetrievalStage(
            services.knowledge, services.settings.retrieval, services.tokenizer
        )
        self.breaker = _primary_breaker(services)
        metrics = services.metrics
        metrics.circuit("llm_primary", int(self.breaker.state))
        self.breaker.subscribe(lambda name, state: metrics.circuit(name, int(state)))

    @property
    def served_models(self) -> list[str]:
        """Model ids clients may request."""
        return [self._served]

    async def prepare(
        self, chat: ValidatedChat, request_id: str, tenant: str, plan: RequestPlan
    ) -> ChatRun:
        """Check the model, run the guards, retrieve, assemble and fit the prompt.

        Client errors raise; retrieval problems only degrade the answer.
        """
        if chat.model != self._served:
            raise UnknownModel(
                f"Model {chat.model!r} is not served here; use one of: {self._served}. "
                "GET /v1/models lists them.",
                extra={"available_models": self.served_models},
            )
        metrics = self._services.metrics
        with span("guards") as current:
            outcome = await self._guards.run(chat.messages, plan.runtime.allowed_places)
            current.set_attribute("enclave.decision", outcome.decision)
            current.set_attribute("enclave.intent", outcome.verdict.intent)
        metrics.observe_stage("guards", outcome.timings_ms.get("guards_ms", 0.0) / 1000)
        for entity_type, count in outcome.protected.items():
            metrics.pii(entity_type, count)
        run = ChatRun(
            request_id=request_id,
            model=chat.model,
            guard=outcome,
            plan=plan,
            requested_decoding=chat.requested_decoding,
        )
        _log.info(
            "guards decided",
            extra={
                "request_id": request_id,
                "decision": outcome.decision,
                "intent": outcome.verdict.intent,
                "pii_protected": outcome.protected,
                "injection_rules": list(outcome.verdict.injection_rules),
            },
        )
        if outcome.decision not in {"answer", "answer_without_documents"}:
            return run
        if outcome.decision == "answer":
            query = next(m.content for m in reversed(outcome.messages) if m.role == "user")
            said = next(m.content for m in reversed(chat.messages) if m.role == "user")
            # The guard embedded what the user said; when scrubbing changed nothing, the
            # retriever searches with that embedding instead of encoding the text again.
            same_text = query == said
            with span("retrieval") as current:
                runtime = plan.runtime
                limits = RetrievalLimits(
                    runtime.retrieval_enabled,
                    runtime.top_k,
                    runtime.min_score,
                    runtime.max_context_tokens,
                )
                run.grounding = await self._retrieval.run(
                    tenant,
                    chat.knowledge_base,
                    query,
                    limits,
                    outcome.verdict if same_text else None,
                )
                current.set_attribute("enclave.retrieval", run.grounding.status)
                current.set_attribute("enclave.chunks", len(run.grounding.sources))
            metrics.observe_stage(
                "retrieval", run.grounding.timings_ms.get("retrieval_ms", 0.0) / 1000
            )
        metrics.retrieval(run.grounding.status)
        started = time.perf_counter()
        with span("prompt", {"enclave.prompt_version": plan.prompt.version}) as current:
            run.fit = self._fit_with_documents(chat, run)
            current.set_attribute("enclave.prompt_tokens", len(run.fit.prompt_token_ids))
            current.set_attribute("enclave.dropped_messages", run.fit.dropped_messages)
        run.timings_ms["prompt_ms"] = round((time.perf_counter() - started) * 1000, 2)
        metrics.observe_stage("prompt", run.timings_ms["prompt_ms"] / 1000)
        if run.fit.dropped_messages:
            _log.info(
                "context fitted",
                extra={"request_id": request_id, "dropped_messages": run.fit.dropped_messages},
            )
        return run

    def canned_reply(self, run: ChatRun) -> str:
        """The prompt's answer for a request the guards did not let through."""
        part = {"block": "blocked", "refuse": "refusal", "escalate": "escalation"}[run.decision]
        return self._render(run.plan, part)

    def _render(
        self, plan: RequestPlan, part: str, documents: list[dict[str, Any]] | None = None
    ) -> str:
        values = plan.prompt_values(documents)
        values["canary"] = self._services.canary_token
        return plan.prompt.render(part, values)

    def _fit_with_documents(self, chat: ValidatedChat, run: ChatRun) -> ContextFit:
        messages = run.guard.messages
        try:
            return self._fit(chat, run, messages, run.grounding)
        except ContextTooLong:
            if not run.grounding.sources:
                raise
            # The documents made the prompt too long: answer without them rather than fail.
            run.grounding = replace(
                run.grounding, status="skipped", sources=(), reason="no room for documents"
            )
            return self._fit(chat, run, messages, run.grounding)

    def _fit(
        self,
        chat: ValidatedChat,
        run: ChatRun,
        messages: tuple[ChatMessage, ...],
        grounding: Grounding,
    ) -> ContextFit:
        llm = self._settings.llm
        return fit_context(
            self._assemble(run, messages, grounding),
            self._services.tokenizer,
            max_model_len=llm.primary.max_model_len,
            requested_max_tokens=chat.max_tokens or run.plan.runtime.default_max_tokens,
            reserve_retrieval_tokens=self._settings.context.reserve_retrieval_tokens,
            min_answer_tokens=self._settings.context.min_answer_tokens,
        )

    def _assemble(
        self, run: ChatRun, messages: tuple[ChatMessage, ...], grounding: Grounding
    ) -> list[ChatMessage]:
        # One system message: the prompt's system part, its developer part with the documents
        # (when there are any), then whatever system text the client sent.
        client_system = [m.content for m in messages if m.role == "system"]
        # The reply filter looks for leaks of our instructions, not of the documents (an
        # answer may quote a passage).
        run.system_text = self._render(run.plan, "system")
        values = run.plan.prompt_values(_documents(grounding))
        values["canary"] = self._services.canary_token
        system = system_message(run.plan.prompt, values, client_system)
        return [ChatMessage("system", system), *(m for m in messages if m.role != "system")]

    async def stream(
        self, chat: ValidatedChat, run: ChatRun
    ) -> AsyncGenerator[GenerationDelta | Notice, None]:
        """The user-facing answer: generated (with fallback), filtered, placeholders restored;
        a ``Notice`` when the answer moves to the fallback engine."""
        assert run.fit is not None
        run.reply_filter = ReplyFilter(
            vault=run.guard.vault,
            scanner=self._services.output_scanner,
            system_prompt=run.system_text,
            canary=self._services.canary_token,
            leak_min_chars=self._settings.guard.leak_min_chars,
            replacement=self._render(run.plan, "blocked"),
            repetition=RepetitionGuard() if self._settings.guard.cut_repetition else None,
        )
        reply = run.reply_filter
        last = GenerationDelta(text="")
        async with aclosing(self._generate(chat, run)) as generated:
            async for delta in generated:
                if isinstance(delta, Notice):
                    yield delta
                    continue
                last = delta
                text = reply.feed(delta.text).text if delta.text else ""
                if delta.finish_reason is not None and not (reply.leaked or reply.looped):
                    text += reply.flush().text
                if reply.leaked or reply.looped:
                    _log.warning(
                        "reply cut: system prompt leak" if reply.leaked else "reply cut: loop",
                        extra={"request_id": run.request_id},
                    )
                    yield GenerationDelta(
                        text, "stop", delta.prompt_tokens, delta.completion_tokens
                    )
                    return  # leaving the block closes the generator: generation stops
                if text and "first_text_ms" not in run.timings_ms:
                    # The user's first visible words: what the client's TTFT measures, here.
                    first = (time.perf_counter() - run.started) * 1000
                    run.timings_ms["first_text_ms"] = round(first, 2)
                if text or delta.finish_reason is not None:
                    yield GenerationDelta(
                        text, delta.finish_reason, delta.prompt_tokens, delta.completion_tokens
                    )
        if last.finish_reason is None:
            tail = reply.flush().text
            if tail:
                yield GenerationDelta(tail, None, last.prompt_tokens, last.completion_tokens)

    async def _generate(
        self, chat: ValidatedChat, run: ChatRun
    ) -> AsyncGenerator[GenerationDelta | Notice, None]:
        """Generate on the primary; move to the fallback when the primary fails, misses a
        deadline or its breaker is open: before the first token with the same request,
        mid-stream with the text so far, which the fallback continues."""
        assert run.fit is not None
        request = GenerationRequest(
            request_id=run.request_id,
            messages=run.fit.messages,
            sampling=chat.sampling(run.fit.max_tokens),
            prompt_token_ids=run.fit.prompt_token_ids,
        )
        so_far = _Progress(prompt_tokens=len(run.fit.prompt_token_ids))
        fallback = self._services.fallback
        if run.plan.runtime.engine == "fallback" and fallback is not None:
            # The tenant is routed to the fallback engine: it answers alone (it templates the
            # chat itself; the token ids were counted with the primary's template).
            routed = self._engine_stream(
                fallback, replace(request, prompt_token_ids=None), run, so_far
            )
            async with aclosing(routed):
                async for delta in routed:
                    yield delta
            return
        primary_error: Exception | None = None
        if self.breaker.allow():
            verdict: bool | None = None  # None: says nothing about the primary's health
            try:
                # aclosing: a consumer that leaves (disconnect, leak cut) cancels the engine
                # now, not when the garbage collector gets to the inner generators.
                primary = self._engine_stream(self._services.primary, request, run, so_far)
                async with aclosing(primary):
                    async for delta in primary:
                        if delta.finish_reason is not None:
                            # Complete. The chat service stops reading at this delta and
                            # closes the stream, so the line after the loop never runs for
                            # it: without this a half-open breaker's successful probe was
                            # released, not recorded, and the breaker never closed.
                            verdict = True
                        yield delta
                verdict = True
                return
            except Exception as exc:
                if so_far.finished:
                    verdict = True  # the answer was complete; a late error changes nothing
                    return
                # A full queue is overload, not a broken primary: opening the breaker on it
                # would send every request to the (smaller) fallback.
                verdict = None if isinstance(exc, ServiceUnavailable) else False
                primary_error = exc
            finally:
                if verdict is None:
                    self.breaker.release()
                elif verdict:
                    self.breaker.record_success()
                else:
                    self.breaker.record_failure()
        rescue = self._fall_back(request, run, so_far, primary_error)
        async with aclosing(rescue):
            async for item in rescue:
                yield item

    async def _fall_back(
        self,
        request: GenerationRequest,
        run: ChatRun,
        so_far: _Progress,
        primary_error: Exception | None,
    ) -> AsyncGenerator[GenerationDelta | Notice, None]:
        """The fallback's answer, or its continuation of what the primary streamed."""
        reason = "circuit_open" if primary_error is None else type(primary_error).__name__
        mid_stream = so_far.deltas > 0
        # The tenant's runtime configuration may keep the fallback out of its answers.
        fallback = self._services.fallback if run.plan.runtime.fallback_enabled else None
        if fallback is None:
            if primary_error is None:
                wait = max(1, math.ceil(self.breaker.retry_after_s()))
                raise GenerationFailed(
                    f"The language model is failing; retry in {wait} seconds.", retry_after=wait
                )
            if mid_stream or isinstance(primary_error, ServiceUnavailable):
                raise primary_error
            raise GenerationFailed(
                f"No language model could answer right now (primary: {reason}). "
                "Retry in a few seconds.",
                retry_after=5,
            )
        when: Literal["before_first_token", "mid_stream"] = (
            "mid_stream" if mid_stream else "before_first_token"
        )
        run.fallback_used, run.fallback_reason, run.fallback_when = True, reason, when
        yield Notice({"event": "fallback", "reason": reason, "when": when})
        _log.warning(
            "answer moves to the fallback engine",
            extra={
                "request_id": run.request_id,
                "reason": reason,
                "when": when,
                "completion_tokens_so_far": so_far.completion_tokens,
            },
        )
        if mid_stream:
            left = request.sampling.max_tokens - so_far.completion_tokens
            if left <= 0:  # the primary died after its last token: the answer is complete
                yield GenerationDelta("", "length", so_far.prompt_tokens, so_far.completion_tokens)
                return
            # The fallback templates the chat itself (the ids were counted for the primary's
            # template) with the partial answer as an unfinished assistant message.
            request = replace(
                request,
                prompt_token_ids=None,
                continue_from=so_far.text,
                sampling=replace(request.sampling, max_tokens=left),
            )
        rescued = _Progress()
        deltas = self._engine_stream(fallback, request, run, rescued)
        try:
            async with aclosing(deltas):
                async for delta in deltas:
                    if not mid_stream:
                        yield delta
                        continue
                    # Usage: the client's prompt once, and every token it was sent; the
                    # partial answer re-read by the fallback is our cost, not the client's.
                    yield GenerationDelta(
                        delta.text,
                        delta.finish_reason,
                        so_far.prompt_tokens,
                        so_far.completion_tokens + delta.completion_tokens,
                    )
        except Exception as exc:
            _log.warning(
                "fallback engine failed",
                extra={
                    "request_id": run.request_id,
                    "when": when,
                    "error_type": type(exc).__name__,
                },
            )
            if mid_stream or rescued.deltas:
                raise  # mid-stream: the route ends the stream with an error event
            if isinstance(exc, ServiceUnavailable) and (
                primary_error is None or isinstance(primary_error, ServiceUnavailable)
            ):
                raise ServiceUnavailable(
                    "Every language model is at capacity right now. Retry in a few seconds.",
                    retry_after=exc.retry_after,
                ) from exc
            raise GenerationFailed(
                f"No language model could answer right now (primary: {reason}, "
                f"fallback: {type(exc).__name__}). Retry in a few seconds.",
                retry_after=5,
            ) from exc

    async def _engine_stream(
        self, client: LLMClient, request: GenerationRequest, run: ChatRun, progress: _Progress
    ) -> AsyncGenerator[GenerationDelta, None]:
        """One engine's deltas under the first-token and stall deadlines, noted in
        ``progress``; the engine's stream is cancelled at a deadline and always closed."""
        llm = self._settings.llm
        # Each engine runs its own model, with its own repetition penalties (unless the
        # client chose the frequency and presence penalties itself).
        decoding = run.decoding_for("fallback" if client is self._services.fallback else "primary")
        sampling = replace(
            request.sampling,
            repetition_penalty=decoding.repetition_penalty,
            frequency_penalty=decoding.frequency_penalty,
            presence_penalty=decoding.presence_penalty,
        )
        request = replace(request, sampling=sampling)
        deltas = with_deadlines(
            client.generate(request), first_s=llm.first_token_timeout_s, gap_s=llm.stall_timeout_s
        )
        asked = time.perf_counter()
        try:
            async for delta in deltas:
                if not progress.deltas:
                    run.engine = client.info().engine
                    if run.first_token_s is None:
                        now = time.perf_counter()
                        run.first_token_s = now - run.started
                        # From asking the engine (through its handle) to its first delta here.
                        run.timings_ms["engine_first_token_ms"] = round((now - asked) * 1000, 2)
                progress.note(delta)
                yield delta
        finally:
            await deltas.aclose()


@dataclass(slots=True)
class _Progress:
    """What one engine has streamed of an answer so far."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    deltas: int = 0
    finished: bool = False
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The answer's raw text so far (placeholders, not the user's values)."""
        return "".join(self.parts)

    def note(self, delta: GenerationDelta) -> None:
        """Count a delta the consumer is about to receive."""
        self.deltas += 1
        self.parts.append(delta.text)
        self.prompt_tokens = delta.prompt_tokens or self.prompt_tokens
        self.completion_tokens = delta.completion_tokens
        self.finished = delta.finish_reason is not None


def _documents(grounding: Grounding) -> list[dict[str, Any]]:
    """The retrieved passages as the prompt's ``documents`` variable, numbered for citing."""
    return [
        {
            "number": number,
            "title": source.title,
            "heading_path": list(source.heading_path),
            "text": source.text,
            "doc_id": source.doc_id,
        }
        for number, source in enumerate(grounding.sources, start=1)
    ]


def _primary_breaker(services: Services) -> CircuitBreaker:
    llm = services.settings.llm
    return CircuitBreaker(
        "llm_primary",
        failure_threshold=llm.circuit_failure_threshold,
        failure_rate=llm.circuit_failure_rate,
        window_s=llm.circuit_window_s,
        min_calls=llm.circuit_min_calls,
        open_s=llm.circuit_open_s,
    )
