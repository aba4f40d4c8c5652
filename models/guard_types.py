"""Plain verdict types of the text guard (cross Ray handles; no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GuardVerdict"]


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """What the guard decided about one message (no message text)."""

    intent: str
    intent_confidence: float
    injection: bool
    injection_score: float
    injection_rules: tuple[str, ...]
