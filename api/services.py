"""What the API needs from the rest of the stack, as Protocols (the composition root fills them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from api.context import PromptTokenizer
from core.settings import Settings
from models.llm.base import EngineInfo, GenerationDelta, GenerationRequest

__all__ = ["LLMClient", "Services"]


class LLMClient(Protocol):
    """A reachable language model: a Serve deployment handle, or an engine in-process."""

    def info(self) -> EngineInfo:
        """The engine and model behind this client."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream the answer; closing the iterator cancels generation."""

    async def check_health(self) -> None:
        """Raise if the model cannot serve."""

    async def running_requests(self) -> int:
        """Requests being generated right now."""


@dataclass(frozen=True, slots=True)
class Services:
    """Everything ``create_app`` composes."""

    settings: Settings
    config_version: str
    primary: LLMClient
    fallback: LLMClient | None
    tokenizer: PromptTokenizer
