"""Composes one chat request: validate, fit the context, generate (with fallback), stream."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from api.context import ContextFit, fit_context
from api.services import LLMClient, Services
from api.validation import ValidatedChat
from core.errors import GenerationFailed, UnknownModel
from models.llm.base import GenerationDelta, GenerationRequest

__all__ = ["ChatPipeline", "ChatRun"]

_log = logging.getLogger("enclave.pipeline")


@dataclass(slots=True)
class ChatRun:
    """One request's progress: what ran, for the response and its lineage."""

    request_id: str
    model: str
    fit: ContextFit
    engine: str = ""
    fallback_used: bool = False
    fallback_reason: str | None = None
    started: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None


class ChatPipeline:
    """The per-request composition of the chat stages."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._settings = services.settings
        self._served = services.primary.info().model

    @property
    def served_models(self) -> list[str]:
        """Model ids clients may request."""
        return [self._served]

    def prepare(self, chat: ValidatedChat, request_id: str) -> ChatRun:
        """Check the model and fit the conversation (raises client errors before streaming)."""
        if chat.model != self._served:
            raise UnknownModel(
                f"Model {chat.model!r} is not served here; use one of: {self._served}. "
                "GET /v1/models lists them.",
                extra={"available_models": self.served_models},
            )
        llm = self._settings.llm
        fit = fit_context(
            chat.messages,
            self._services.tokenizer,
            max_model_len=llm.primary.max_model_len,
            requested_max_tokens=chat.max_tokens or llm.default_max_tokens,
            reserve_retrieval_tokens=self._settings.context.reserve_retrieval_tokens,
            min_answer_tokens=self._settings.context.min_answer_tokens,
        )
        if fit.dropped_messages:
            _log.info(
                "context fitted",
                extra={"request_id": request_id, "dropped_messages": fit.dropped_messages},
            )
        return ChatRun(request_id=request_id, model=chat.model, fit=fit)

    async def stream(
        self, chat: ValidatedChat, run: ChatRun
    ) -> AsyncGenerator[GenerationDelta, None]:
        """Generate on the primary; switch to the fallback if it fails before its first token."""
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
