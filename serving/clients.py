"""Adapters between the parts: Serve handles, the prompt tokenizer, PII finders."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from core.errors import EnclaveError, ServiceUnavailable
from core.metrics import EnclaveMetrics
from core.tracing import inject
from index.base import (
    DocumentInfo,
    IngestOutcome,
    KnowledgeBaseInfo,
    Passage,
    PiiPolicy,
    RetrievalResult,
    UploadedFile,
)
from models.guard_types import GuardVerdict
from models.llm.base import ChatMessage, EngineInfo, GenerationDelta, GenerationRequest
from models.llm.chat_template import prompt_token_ids
from models.pii.base import PIIScanner, ScanResult

__all__ = [
    "HandleGuardClient",
    "HandleKnowledgeService",
    "HandleLLMClient",
    "HandleSpanFinder",
    "LocalSpanFinder",
    "TemplateTokenizer",
]


class HandleLLMClient:
    """An ``LLMServer`` deployment reached through its Serve handle."""

    def __init__(
        self, handle: Any, info: EngineInfo, name: str, metrics: EnclaveMetrics | None = None
    ) -> None:
        self._handle = handle
        self._stream = handle.options(stream=True)
        self._info = info
        self.name = name
        self._metrics = metrics
        self._deployment = f"llm_{name}"

    @classmethod
    async def connect(
        cls, handle: Any, *, name: str, metrics: EnclaveMetrics | None = None
    ) -> HandleLLMClient:
        """Ask the deployment what it runs (once, at API start)."""
        info = await handle.info.remote()
        return cls(handle, info, name, metrics)

    def info(self) -> EngineInfo:
        """The engine and model behind the handle."""
        return self._info

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream deltas; leaving early cancels the call, which aborts it in the engine.

        A full deployment queue raises ``ServiceUnavailable`` (503, ``Retry-After``).
        """
        response = self._stream.generate.remote(request, trace_context=inject())
        finished = False
        metrics = self._metrics
        watch = (
            metrics.generating(self._deployment)
            if metrics is not None
            else contextlib.nullcontext()
        )
        produced = 0
        try:
            with watch:
                async for delta in response:
                    if metrics is not None and delta.completion_tokens > produced:
                        # Counted as they arrive: a stalled engine shows as a flat rate.
                        metrics.engine_tokens(self._deployment, delta.completion_tokens - produced)
                        produced = delta.completion_tokens
                    yield delta
            finished = True
        except Exception as exc:
            _raise_if_back_pressure(exc, self.name)
            raise
        finally:
            if not finished:
                response.cancel()

    async def check_health(self) -> None:
        """Raise unless a replica answers its health check."""
        await self._handle.check_health.remote()

    async def running_requests(self) -> int:
        """Requests a replica is generating (one replica's view; enough for one replica)."""
        return int(await self._handle.running_requests.remote())


class HandleGuardClient:
    """The PII/NER and intent/injection deployments, reached through their handles."""

    def __init__(self, pii: Any, guard: Any) -> None:
        self._pii = pii
        self._guard = guard

    async def scan(self, texts: list[str]) -> list[ScanResult]:
        """PII spans and entities per text; a full queue raises ``ServiceUnavailable``."""
        try:
            result: list[ScanResult] = await self._pii.scan.remote(texts, trace_context=inject())
        except Exception as exc:
            _raise_if_back_pressure(exc, "pii")
            raise
        return result

    async def check(self, text: str) -> GuardVerdict:
        """Intent and injection verdict for one message; a full queue raises
        ``ServiceUnavailable``."""
        try:
            verdict: GuardVerdict = await self._guard.check.remote(text, trace_context=inject())
        except Exception as exc:
            _raise_if_back_pressure(exc, "guard")
            raise
        return verdict

    async def check_health(self) -> None:
        """Raise unless both deployments answer."""
        await self._pii.check_health.remote()
        await self._guard.check_health.remote()


class TemplateTokenizer:
    """The model's own tokenizer and chat template, loaded in the API process."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    @classmethod
    def from_folder(cls, folder: Path) -> TemplateTokenizer:
        """Load the tokenizer of a model folder."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(folder)))

    def prompt_token_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Token ids of the templated chat."""
        return prompt_token_ids(self._tokenizer, messages)


_BACK_PRESSURE_RETRY_AFTER_S = 2


def _raise_if_back_pressure(exc: Exception, deployment: str) -> None:
    """Turn Serve's "queue full" (``BackPressureError``, also wrapped in a ``RayTaskError``
    when a replica's own call was refused) and a dead or restarting replica
    (``RayActorError``) into ``ServiceUnavailable``: 503, Retry-After."""
    from ray.exceptions import RayActorError, RayTaskError
    from ray.serve.exceptions import BackPressureError

    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    if isinstance(cause, RayActorError):
        # The replica died or is restarting: a transient condition a retry may outlive.
        raise ServiceUnavailable(
            f"The {deployment} service is restarting. Retry in a few seconds.",
            retry_after=_BACK_PRESSURE_RETRY_AFTER_S,
            extra={"deployment": deployment},
        ) from exc
    if not isinstance(cause, BackPressureError):
        return
    hint = cause.retry_after_s
    retry_after = math.ceil(hint) if hint else _BACK_PRESSURE_RETRY_AFTER_S
    raise ServiceUnavailable(
        f"The {deployment} service is at capacity. Retry in {retry_after} seconds.",
        retry_after=max(1, retry_after),
        extra={"deployment": deployment},
    ) from exc


def _unwrapped(exc: Exception) -> Exception:
    """The error a replica raised on purpose (ours), else the Ray error itself."""
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError) and isinstance(exc.cause, EnclaveError):
        return exc.cause
    return exc


class HandleKnowledgeService:
    """``index.base.KnowledgeService`` over the retriever deployment's handle.

    Errors the replica raised on purpose (unknown knowledge base, bad document, ...) are
    re-raised as themselves, so the API maps them to the right 4xx.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self._handle, method).remote(*args, **kwargs)
        except Exception as exc:
            _raise_if_back_pressure(exc, "retriever")
            cause = _unwrapped(exc)
            if cause is exc:
                raise
            raise cause from None

    async def create_base(
        self,
        tenant: str,
        name: str,
        *,
        description: str = "",
        pii_policy: PiiPolicy | None = None,
        actor: str = "system",
    ) -> KnowledgeBaseInfo:
        """Create an empty knowledge base."""
        result: KnowledgeBaseInfo = await self._call(
            "create_base",
            tenant,
            name,
            description=description,
            pii_policy=pii_policy,
            actor=actor,
        )
        return result

    async def list_bases(self, tenant: str) -> list[KnowledgeBaseInfo]:
        """The tenant's knowledge bases."""
        result: list[KnowledgeBaseInfo] = await self._call("list_bases", tenant)
        return result

    async def get_base(self, tenant: str, name: str) -> KnowledgeBaseInfo:
        """One knowledge base."""
        result: KnowledgeBaseInfo = await self._call("get_base", tenant, name)
        return result

    async def delete_base(self, tenant: str, name: str) -> None:
        """Delete a knowledge base."""
        await self._call("delete_base", tenant, name)

    async def upload(
        self, tenant: str, name: str, files: list[UploadedFile], *, actor: str = "system"
    ) -> IngestOutcome:
        """Ingest files, all or nothing."""
        result: IngestOutcome = await self._call("upload", tenant, name, files, actor=actor)
        return result

    async def list_documents(self, tenant: str, name: str) -> list[DocumentInfo]:
        """The documents of a knowledge base."""
        result: list[DocumentInfo] = await self._call("list_documents", tenant, name)
        return result

    async def delete_document(self, tenant: str, name: str, doc_id: str) -> IngestOutcome:
        """Remove a document and its vectors."""
        result: IngestOutcome = await self._call("delete_document", tenant, name, doc_id)
        return result

    async def reindex(self, tenant: str, name: str) -> IngestOutcome:
        """Re-index every document."""
        result: IngestOutcome = await self._call("reindex", tenant, name)
        return result

    async def retrieve(
        self,
        tenant: str,
        name: str,
        query: str,
        *,
        k: int,
        min_score: float,
        embedding: bytes = b"",
        embedding_model: str = "",
    ) -> RetrievalResult:
        """The best chunks for a query."""
        result: RetrievalResult = await self._call(
            "retrieve",
            tenant,
            name,
            query,
            k=k,
            min_score=min_score,
            embedding=embedding,
            embedding_model=embedding_model,
            trace_context=inject(),
        )
        return result

    async def passage(self, tenant: str, name: str, chunk_id: str) -> Passage:
        """One chunk's text."""
        result: Passage = await self._call("passage", tenant, name, chunk_id)
        return result

    async def check_health(self) -> None:
        """Raise unless the retriever answers."""
        await self._call("check_health")


def _spans(results: list[ScanResult], ignore: frozenset[str]) -> list[list[tuple[int, int, str]]]:
    return [
        [(s.start, s.end, s.entity_type) for s in result.pii if s.entity_type not in ignore]
        for result in results
    ]


class LocalSpanFinder:
    """``index.base.SpanFinder`` over an in-process PII scanner (the CLI)."""

    def __init__(self, scanner: PIIScanner, ignore: Sequence[str] = ()) -> None:
        self._scanner = scanner
        self._ignore = frozenset(ignore)

    async def find(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        """PII spans per text, off the event loop."""
        results = await asyncio.to_thread(self._scanner.scan, texts)
        return _spans(results, self._ignore)


class HandleSpanFinder:
    """``index.base.SpanFinder`` over the PII deployment's handle (the retriever replica)."""

    def __init__(self, pii: Any, ignore: Sequence[str] = ()) -> None:
        self._pii = pii
        self._ignore = frozenset(ignore)

    async def find(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        """PII spans per text."""
        results: list[ScanResult] = await self._pii.scan.remote(texts)
        return _spans(results, self._ignore)
