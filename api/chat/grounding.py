"""Retrieval for a chat: find the tenant's documents, fit them into the prompt, cite them.

Retrieval never fails a chat: an error or a timeout (``retrieval.timeout_s``) means the
answer goes on without documents and the response says ``retrieval: degraded``. Only a
knowledge base the client named that does not exist is the client's error (404).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from api.chat.resilience import retry_idempotent
from api.services import PromptTokenizer
from core.errors import ClientError
from core.settings import RetrievalSettings
from index.base import KnowledgeService, Source
from models.guard_types import GuardVerdict
from models.llm.base import ChatMessage

__all__ = ["Grounding", "RetrievalLimits", "RetrievalStage"]

_log = logging.getLogger("enclave.retrieval")

RetrievalStatus = Literal["ok", "empty", "degraded", "skipped"]


@dataclass(frozen=True, slots=True)
class Grounding:
    """What retrieval gave one chat: the sources used in the prompt, or why there are none."""

    status: RetrievalStatus
    knowledge_base: str | None = None
    version: str | None = None
    sources: tuple[Source, ...] = ()
    reason: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def lineage(self) -> dict[str, Any]:
        """Identifiers and scores only (the passage text stays out of the lineage)."""
        return {
            "status": self.status,
            "knowledge_base": self.knowledge_base,
            "index_version": self.version,
            "reason": self.reason,
            "chunk_ids": [s.chunk_id for s in self.sources],
        }

    def citations(self) -> list[dict[str, Any]]:
        """The sources as the response shows them: ``[n]`` in the answer is ``number`` n; the
        best source has a ``quote``, its sentence(s) that best answer the question."""
        return [
            {
                "number": number,
                "knowledge_base": s.knowledge_base,
                "document_id": s.doc_id,
                "title": s.title,
                "chunk_id": s.chunk_id,
                "score": s.score,
                "heading_path": list(s.heading_path),
                **({"quote": s.quote} if s.quote else {}),
            }
            for number, s in enumerate(self.sources, start=1)
        ]


@dataclass(frozen=True, slots=True)
class RetrievalLimits:
    """How much to retrieve for one request."""

    enabled: bool
    top_k: int
    min_score: float
    max_context_tokens: int


class RetrievalStage:
    """Runs retrieval for a chat and trims what it found to the prompt budget."""

    def __init__(
        self,
        knowledge: KnowledgeService | None,
        settings: RetrievalSettings,
        tokenizer: PromptTokenizer,
    ) -> None:
        self._knowledge = knowledge
        self._settings = settings
        self._tokenizer = tokenizer

    async def run(
        self,
        tenant: str,
        requested: str | None,
        query: str,
        limits: RetrievalLimits | None = None,
        verdict: GuardVerdict | None = None,
    ) -> Grounding:
        """Retrieve for ``query`` from the named (or the default) knowledge base, within
        ``limits`` (the tenant's runtime configuration; the settings' when not given).
        ``verdict``: the guard's verdict on this very text, whose embedding the retriever
        reuses (one encoder pass per question instead of two)."""
        settings = self._settings
        limits = limits or RetrievalLimits(
            settings.enabled, settings.top_k, settings.min_score, settings.max_context_tokens
        )
        name = requested or settings.default_knowledge_base
        if self._knowledge is None or not limits.enabled:
            return Grounding("skipped", reason="retrieval is turned off")
        started = time.perf_counter()
        try:
            knowledge = self._knowledge
            result = await asyncio.wait_for(
                retry_idempotent(
                    lambda: knowledge.retrieve(
                        tenant,
                        name,
                        query,
                        k=limits.top_k,
                        min_score=limits.min_score,
                        embedding=verdict.embedding if verdict else b"",
                        embedding_model=verdict.embedding_model if verdict else "",
                    )
                ),
                timeout=settings.timeout_s,
            )
        except TimeoutError:
            return self._degraded(name, f"no answer within {settings.timeout_s:g}s", started)
        except ClientError:
            if requested is not None:
                raise  # the client named a knowledge base that is not theirs or not there
            return Grounding("skipped", name, reason="no default knowledge base")
        except Exception as exc:
            return self._degraded(name, type(exc).__name__, started)
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        sources = self._within_budget(result.sources, limits.max_context_tokens)
        status: RetrievalStatus = "ok" if sources else "empty"
        return Grounding(
            status, name, result.version, sources, timings_ms={"retrieval_ms": elapsed}
        )

    def _degraded(self, name: str, reason: str, started: float) -> Grounding:
        _log.warning("retrieval degraded", extra={"knowledge_base": name, "reason": reason})
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        return Grounding("degraded", name, reason=reason, timings_ms={"retrieval_ms": elapsed})

    def _within_budget(self, sources: tuple[Source, ...], budget: int) -> tuple[Source, ...]:
        kept: list[Source] = []
        for source in sources:
            cost = len(self._tokenizer.prompt_token_ids([ChatMessage("system", source.text)]))
            if cost > budget:
                break
            budget -= cost
            kept.append(source)
        return tuple(kept)
