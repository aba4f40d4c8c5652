"""What a chat answer yields as it happens: a small union of plain events.

The chat service produces them; the route only frames them (SSE chunks, or one JSON body).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from core.errors import EnclaveError

__all__ = ["ChatEvent", "Completed", "Failed", "Notice", "TextDelta"]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Answer text for the user (placeholders already restored)."""

    text: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the client should know mid-answer, e.g. a switch to the fallback engine."""

    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Completed:
    """The answer is complete and recorded (history and audit committed)."""

    finish_reason: Literal["stop", "length", "abort"]
    prompt_tokens: int
    completion_tokens: int
    lineage: dict[str, Any]
    conversation_id: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The answer broke off after it had begun; nothing was recorded."""

    error: EnclaveError


ChatEvent = TextDelta | Notice | Completed | Failed
