"""Adapters that give the API what it needs from Serve: LLM handles and the prompt tokenizer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from models.guard_types import GuardVerdict
from models.llm.base import ChatMessage, EngineInfo, GenerationDelta, GenerationRequest
from models.llm.chat_template import prompt_token_ids
from models.pii.base import ScanResult

__all__ = ["HandleGuardClient", "HandleLLMClient", "TemplateTokenizer"]


class HandleLLMClient:
    """An ``LLMServer`` deployment reached through its Serve handle."""

    def __init__(self, handle: Any, info: EngineInfo, name: str) -> None:
        self._handle = handle
        self._stream = handle.options(stream=True)
        self._info = info
        self.name = name

    @classmethod
    async def connect(cls, handle: Any, *, name: str) -> HandleLLMClient:
        """Ask the deployment what it runs (once, at API start)."""
        info = await handle.info.remote()
        return cls(handle, info, name)

    def info(self) -> EngineInfo:
        """The engine and model behind the handle."""
        return self._info

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream deltas; leaving early cancels the call, which aborts it in the engine."""
        response = self._stream.generate.remote(request)
        finished = False
        try:
            async for delta in response:
                yield delta
            finished = True
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
        """PII spans and entities per text."""
        result: list[ScanResult] = await self._pii.scan.remote(texts)
        return result

    async def check(self, text: str) -> GuardVerdict:
        """Intent and injection verdict for one message."""
        verdict: GuardVerdict = await self._guard.check.remote(text)
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
