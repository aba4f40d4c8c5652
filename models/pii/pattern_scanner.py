"""Pattern-only PII detection (no NLP model): fast enough to scan a streamed reply."""

from __future__ import annotations

import re
from typing import Any

from core.settings import PIISettings
from models.pii.base import PIISpan
from models.pii.names import name_lexicon
from models.pii.presidio_scanner import (
    PATTERN_ENTITIES,
    build_pattern_recognizers,
    lexicon_names,
    resolve_overlaps,
)

__all__ = ["PatternScanner"]


_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ'’\-]+")


class PatternScanner:
    """Presidio's checksummed pattern recognizers, the organisation's own patterns and,
    optionally, people's names from the name lexicon (no NLP model: fast per chunk)."""

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
        if self._settings.mask_names_in_replies:
            spans.extend(lexicon_names(text, name_lexicon()))
        return list(resolve_overlaps(spans))

    def hold_from(self, text: str) -> int:
        """Where trailing text that may still become a name starts (``len(text)`` if none):
        a known first name at the end may be followed by (the rest of) a surname."""
        if not self._settings.mask_names_in_replies:
            return len(text)
        lexicon = name_lexicon()
        words = list(_WORD.finditer(text[-80:]))
        offset = max(0, len(text) - 80)
        if not words or text[offset + words[-1].end() :].strip():
            return len(text)
        last = words[-1]
        if last.group()[:1].isupper() and lexicon.is_first(last.group()):
            return offset + last.start()  # "… ask Maria "
        if len(words) >= 2 and last.group()[:1].isupper():
            before = words[-2]
            gap = text[offset + before.end() : offset + last.start()]
            if not gap.strip() and lexicon.is_first(before.group()):
                return offset + before.start()  # "… ask Maria Lo"
        return len(text)
