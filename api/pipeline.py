"""Composes one chat request: guards, prompt assembly, context fit, generation, reply filter."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from typing import Any

from api.context import ContextFit, fit_context
from api.grounding import Grounding, RetrievalStage, documents_block
from api.guarding import GuardOutcome, GuardStage
from api.reply_filter import ReplyFilter
from api.services import LLMClient, Services
from api.validation import ValidatedChat
from core.errors import ContextTooLong, GenerationFailed, UnknownModel
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
    fit: ContextFit | None = None
    engine: str = ""
    fallback_used: bool = False
    fallback_reason: str | None = None
    reply_filter: ReplyFilter | None = None
    grounding: Grounding = _NOT_RETRIEVED
    started: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def decision(self) -> str:
        """What the guards decided: answer, refuse, escalate, block, …"""
        return self.guard.decision

    def lineage(self, config_version: str, prompt_version: str) -> dict[str, Any]:
        """What explains this response; identifiers, decisions and counts only (no text)."""
        verdict = self.guard.verdict
        masked = dict(self.reply_filter.masked) if self.reply_filter else {}
        return {
            "request_id": self.request_id,
            "model": self.model,
            "engine": self.engine or None,
            "fallback": self.fallback_reason if self.fallback_used else None,
            "config_version": config_version,
            "prompt_version": prompt_version,
            "decision": self.decision,
            "guard": {
                "intent": verdict.intent,
                "intent_confidence": verdict.intent_confidence,
                "injection": verdict.injection,
                "injection_score": verdict.injection_score,
                "injection_rules": list(verdict.injection_rules),
                "reply_cut_for_leak": bool(self.reply_filter and self.reply_filter.leaked),
            },
            "pii": {"protected": self.guard.protected, "masked_in_reply": masked},
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
        self._system_prompt = services.system_prompt.replace("{canary}", services.canary_token)
        self._documents_prompt = services.documents_prompt
        prompts = "\x00".join([services.system_prompt, services.documents_prompt])
        self.prompt_version = "prm_" + hashlib.sha256(prompts.encode()).hexdigest()[:12]

    @property
    def served_models(self) -> list[str]:
        """Model ids clients may request."""
        return [self._served]

    async def prepare(self, chat: ValidatedChat, request_id: str, tenant: str) -> ChatRun:
        """Check the model, run the guards, retrieve, assemble and fit the prompt.

        Client errors raise; retrieval problems only degrade the answer.
        """
        if chat.model != self._served:
            raise UnknownModel(
                f"Model {chat.model!r} is not served here; use one of: {self._served}. "
                "GET /v1/models lists them.",
                extra={"available_models": self.served_models},
            )
        outcome = await self._guards.run(chat.messages)
        run = ChatRun(request_id=request_id, model=chat.model, guard=outcome)
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
            run.grounding = await self._retrieval.run(tenant, chat.knowledge_base, query)
        started = time.perf_counter()
        try:
            run.fit = self._fit(chat, outcome.messages, run.grounding)
        except ContextTooLong:
            if not run.grounding.sources:
                raise
            # The documents made the prompt too long: answer without them rather than fail.
            run.grounding = replace(
                run.grounding, status="skipped", sources=(), reason="no room for documents"
            )
            run.fit = self._fit(chat, outcome.messages, run.grounding)
        run.timings_ms["prompt_ms"] = round((time.perf_counter() - started) * 1000, 2)
        if run.fit.dropped_messages:
            _log.info(
                "context fitted",
                extra={"request_id": request_id, "dropped_messages": run.fit.dropped_messages},
            )
        return run

    def canned_reply(self, run: ChatRun) -> str:
        """The configured answer for a request the guards did not let through."""
        guard = self._settings.guard
        return {
            "block": guard.blocked_reply,
            "refuse": guard.refusal_reply,
            "escalate": guard.escalation_reply,
        }[run.decision]

    def _fit(
        self, chat: ValidatedChat, messages: tuple[ChatMessage, ...], grounding: Grounding
    ) -> ContextFit:
        llm = self._settings.llm
        return fit_context(
            self._assemble(messages, grounding),
            self._services.tokenizer,
            max_model_len=llm.primary.max_model_len,
            requested_max_tokens=chat.max_tokens or llm.default_max_tokens,
            reserve_retrieval_tokens=self._settings.context.reserve_retrieval_tokens,
            min_answer_tokens=self._settings.context.min_answer_tokens,
        )

    def _assemble(
        self, messages: tuple[ChatMessage, ...], grounding: Grounding
    ) -> list[ChatMessage]:
        # One system message: ours, the documents, then whatever system text the client sent.
        client_system = [m.content for m in messages if m.role == "system"]
        parts = [self._system_prompt]
        if grounding.sources:
            parts.append(documents_block(self._documents_prompt, grounding.sources))
        system = "\n\n".join([*parts, *client_system])
        return [ChatMessage("system", system), *(m for m in messages if m.role != "system")]

    async def stream(
        self, chat: ValidatedChat, run: ChatRun
    ) -> AsyncGenerator[GenerationDelta, None]:
        """The user-facing answer: generated (with fallback), filtered, placeholders restored."""
        assert run.fit is not None
        run.reply_filter = ReplyFilter(
            vault=run.guard.vault,
            scanner=self._services.output_scanner,
            system_prompt=self._system_prompt,
            canary=self._services.canary_token,
            leak_min_chars=self._settings.guard.leak_min_chars,
            replacement=self._settings.guard.blocked_reply,
        )
        reply = run.reply_filter
        last = GenerationDelta(text="")
        async for delta in self._generate(chat, run):
            last = delta
            text = reply.feed(delta.text).text if delta.text else ""
            if delta.finish_reason is not None and not reply.leaked:
                text += reply.flush().text
            if reply.leaked:
                _log.warning("reply cut: system prompt leak", extra={"request_id": run.request_id})
                yield GenerationDelta(text, "stop", delta.prompt_tokens, delta.completion_tokens)
                return  # leaving the loop cancels generation upstream
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
    ) -> AsyncGenerator[GenerationDelta, None]:
        """Generate on the primary; switch to the fallback if it fails before its first token."""
        assert run.fit is not None
        request = GenerationRequest(
            request_id=run.request_id,
            messages=run.fit.messages,
            sampling=chat.sampling(run.fit.max_tokens),
            prompt_token_ids=run.fit.prompt_token_ids,
        )
        candidates: list[tuple[str, LLMClient]] = [("primary", self._services.primary)]
        if self._services.fallback is not None:
            candidates.append(("fallback", self._services.fallback))
        failures: list[str] = []
        for role, client in candidates:
            started_output = False
            try:
                async for delta in client.generate(request):
                    if not started_output:
                        started_output = True
                        run.engine = client.info().engine
                        run.first_token_s = time.perf_counter() - run.started
                    yield delta
                return
            except Exception as exc:
                if started_output:
                    raise  # mid-stream failures surface as an error event (see routes/chat)
                failures.append(f"{role}: {type(exc).__name__}")
                _log.warning(
                    "engine failed before its first token",
                    extra={
                        "request_id": run.request_id,
                        "engine_role": role,
                        "error_type": type(exc).__name__,
                    },
                )
                run.fallback_used = role == "primary"
                run.fallback_reason = type(exc).__name__
        raise GenerationFailed(
            "No language model could answer right now ("
            + ", ".join(failures)
            + "). Retry in a few seconds.",
            retry_after=5,
        )
