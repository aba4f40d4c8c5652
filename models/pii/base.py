"""PII detection contract and the plain data that crosses Ray handles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Entity", "PIIScanner", "PIISpan", "ScanResult"]


@dataclass(frozen=True, slots=True)
class PIISpan:
    """A detected PII value: ``text[start:end]`` is of ``entity_type``."""

    start: int
    end: int
    entity_type: str
    score: float


@dataclass(frozen=True, slots=True)
class Entity:
    """A named entity (spaCy label), for routing and lineage; carries no text."""

    label: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What one scan of one text found."""

    pii: tuple[PIISpan, ...]
    entities: tuple[Entity, ...]


class PIIScanner(Protocol):
    """Finds PII (and named entities) in texts."""

    def scan(self, texts: Sequence[str]) -> list[ScanResult]:
        """One result per text, spans non-overlapping and sorted by start."""
