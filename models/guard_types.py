"""Plain verdict types of the text guard (cross Ray handles; no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["GuardVerdict"]


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """What the guard decided about one message (no message text)."""

    intent: str
    intent_confidence: float
    injection: bool
    injection_score: float
    injection_rules: tuple[str, ...]
    # The message's sentence embedding (float32 bytes) and the encoder that made it
    # (``name@version``): the retriever reuses it instead of encoding the same text again.
    embedding: bytes = field(default=b"", repr=False)
    embedding_model: str = ""
