"""Pattern-only PII detection (no NLP model): fast enough to scan a streamed reply."""

from __future__ import annotations

from typing import Any

from core.settings import PIISettings
from models.pii.base import PIISpan
from models.pii.presidio_scanner import (
    PATTERN_ENTITIES,
    build_pattern_recognizers,
    resolve_overlaps,
)

__all__ = ["PatternScanner"]


class PatternScanner:
    """Presidio's checksummed pattern recognizers and the organisation's own patterns."""

    def __init__(self, settings: PIISettings) -> None:
        self._settings = settings
        self._recognizers: list[Any] = build_pattern_recognizers(settings)
        self._entities = [e for e in PATTERN_ENTITIES if e in settings.entities] + [
            p.entity for p in settings.patterns
        ]

    def find(self, text: str) -> list[PIISpan]:
        """PII spans in ``text``, above their thresholds, overlaps resolved."""
        spans: list[PIISpan] = []
        for recognizer in self._recognizers:
            entities = [e for e in recognizer.supported_entities if e in self._entities]
            if not entities:
                continue
            for result in recognizer.analyze(text, entities, None) or []:
                threshold = self._settings.thresholds.get(
                    result.entity_type, self._settings.default_threshold
                )
                if result.score >= threshold:
                    spans.append(
                        PIISpan(
                            result.start,
                            result.end,
                            result.entity_type,
                            round(float(result.score), 3),
                        )
                    )
        return list(resolve_overlaps(spans))
