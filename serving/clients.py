"""Adapters between the parts: Serve handles, the prompt tokenizer, PII finders."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Sequence
from pathlib import Path
from typing import Any

from core.errors import EnclaveError, ServiceUnavailable
from core.metrics import EnclaveMetrics
from core.tracing import inject
from index.base import (
    KnowledgeService,
)
from models.guard_types import GuardVerdict
from models.llm.base import ChatMessage, EngineInfo, GenerationDelta, GenerationRequest
from models.llm.chat_template import prompt_token_ids
from models.pii.base import PIIScanner, ScanResult

__all__ = [
    "HandleForwarder",
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


class HandleForwarder:
    """Forwards every async method of one Protocol to a Serve deployment, through its handle.

    ``forwarder.name(*args, **kwargs)`` is ``await handle.name.remote(*args, **kwargs)`` for
    each coroutine method ``name`` the Protocol declares (checked when the forwarder is
    built; any other name is an ``AttributeError``). Methods named in ``traced`` also send
    the caller's W3C trace context (``trace_context=``), which the replica continues. Errors
    the replica raised on purpose (unknown knowledge base, bad document, ...) are re-raised as
    themselves, so the API maps them to the right 4xx; a full queue is a 503 with
    ``Retry-After``.

    Typed through ``__getattr__``: mypy accepts a forwarder wherever the Protocol is
    expected, so a subclass per Protocol needs no hand-written method per call.
    """

    def __init__(
        self,
        handle: Any,
        protocol: type,
        *,
        deployment: str,
        traced: Collection[str] = (),
    ) -> None:
        methods = frozenset(
            name
            for name in dir(protocol)
            if not name.startswith("_") and inspect.iscoroutinefunction(getattr(protocol, name))
        )
        unknown = sorted(set(traced) - methods)
        if not methods or unknown:
            msg = f"{protocol.__name__}: no async methods to forward, or unknown traced {unknown}"
            raise TypeError(msg)
        self._handle = handle
        self._methods = methods
        self._deployment = deployment
        self._traced = frozenset(traced)

    def __getattr__(self, method: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        # Only names not found on the instance arrive here; private ones never forward (and
        # must not recurse while the instance is being copied or unpickled).
        if method.startswith("_") or method not in self._methods:
            msg = f"{type(self).__name__} forwards no method {method!r}"
            raise AttributeError(msg)

        async def forwarded(*args: Any, **kwargs: Any) -> Any:
            return await self._call(method, *args, **kwargs)

        return forwarded

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method in self._traced:
            kwargs["trace_context"] = inject()
        try:
            return await getattr(self._handle, method).remote(*args, **kwargs)
        except Exception as exc:
            _raise_if_back_pressure(exc, self._deployment)
            cause = _unwrapped(exc)
            if cause is exc:
                raise
            raise cause from None


class HandleKnowledgeService(HandleForwarder):
    """``index.base.KnowledgeService`` over the retriever deployment's handle."""

    def __init__(self, handle: Any) -> None:
        super().__init__(handle, KnowledgeService, deployment="retriever", traced=("retrieve",))


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
