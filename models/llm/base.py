"""The language-model engine contract and the plain data that crosses Ray handles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "ChatMessage",
    "EngineInfo",
    "FinishReason",
    "GenerationDelta",
    "GenerationRequest",
    "LLMEngine",
    "SamplingOptions",
]

FinishReason = Literal["stop", "length", "abort"]
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    """How to sample; ``None`` leaves the engine's default."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False
    # Against loops; the neutral values leave the distribution as the model gives it.
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A chat to complete; ``prompt_token_ids`` may be given to skip templating.

    ``continue_from``: the beginning of the assistant's answer, already produced (by an
    engine that failed mid-stream); the engine templates it as a final, unfinished
    assistant message and generates only its continuation. Given ``prompt_token_ids``
    must then already include it.
    """

    request_id: str
    messages: tuple[ChatMessage, ...]
    sampling: SamplingOptions
    prompt_token_ids: tuple[int, ...] | None = None
    continue_from: str = ""


@dataclass(frozen=True, slots=True)
class GenerationDelta:
    """A piece of the streamed answer; the last one has ``finish_reason`` set.

    Token counts are cumulative, so the last delta carries the request's usage.
    """

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What an engine runs, for lineage and for ``/v1/models``."""

    engine: str
    model: str
    max_model_len: int
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class LLMEngine(Protocol):
    """A chat model that streams its answer and can be cancelled.

    Cancelling (closing the iterator, or cancelling the task that iterates it) aborts the
    request inside the engine and frees its slot.
    """

    async def start(self) -> None:
        """Load the model; returns when the engine can generate."""

    def info(self) -> EngineInfo:
        """The engine and model this instance runs."""

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens the chat template turns these messages into (generation prompt included)."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream the answer to ``request`` as deltas."""

    def running_requests(self) -> int:
        """Requests being generated right now (cancelled ones are gone at once)."""

    async def check_health(self) -> None:
        """Raise if the engine cannot serve."""

    async def shutdown(self) -> None:
        """Free the engine's processes and memory."""
