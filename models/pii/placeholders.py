"""Reversible pseudonymisation: PII values ↔ stable placeholders such as ``<PERSON_1>``.

A conversation's vault is rebuilt from its messages in order on every turn, so the same
history always yields the same numbering: ``<PERSON_1>`` stays ``<PERSON_1>`` across turns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from models.pii.base import PIISpan

__all__ = ["PLACEHOLDER_RE", "PlaceholderVault"]

PLACEHOLDER_RE = re.compile(r"<([A-Z][A-Z_]{1,30})_(\d{1,4})>")
# Small models sometimes copy a placeholder with square brackets ("[PERSON_1]"): restored too.
_WRITTEN_PLACEHOLDER_RE = re.compile(r"[<\[]([A-Z][A-Z_]{1,30})_(\d{1,4})[>\]]")


def _normalise(value: str) -> str:
    return " ".join(value.split()).casefold()


@dataclass
class PlaceholderVault:
    """The mapping of one conversation; values never leave the request that built it."""

    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    _by_placeholder: dict[str, str] = field(default_factory=dict)
    _counters: dict[str, int] = field(default_factory=dict)

    def placeholder_for(self, entity_type: str, value: str) -> str:
        """The placeholder of this value, minted on first sight."""
        key = (entity_type, _normalise(value))
        existing = self._by_value.get(key)
        if existing is not None:
            return existing
        number = self._counters.get(entity_type, 0) + 1
        self._counters[entity_type] = number
        placeholder = f"<{entity_type}_{number}>"
        self._by_value[key] = placeholder
        self._by_placeholder[placeholder] = value
        return placeholder

    def scrub(self, text: str, spans: Iterable[PIISpan]) -> str:
        """``text`` with every span replaced by its placeholder."""
        pieces: list[str] = []
        cursor = 0
        for span in sorted(spans, key=lambda s: s.start):
            if span.start < cursor:
                continue
            pieces.append(text[cursor : span.start])
            pieces.append(self.placeholder_for(span.entity_type, text[span.start : span.end]))
            cursor = span.end
        pieces.append(text[cursor:])
        return "".join(pieces)

    def restore(self, text: str) -> str:
        """Placeholders of this vault turned back into their values (unknown ones kept), also
        when the model wrote one with square brackets."""
        return _WRITTEN_PLACEHOLDER_RE.sub(
            lambda m: self._by_placeholder.get(f"<{m.group(1)}_{m.group(2)}>", m.group(0)), text
        )

    def conceal(self, text: str) -> str:
        """The values of this vault in ``text`` turned back into their placeholders.

        For storing what the user saw (values restored) without the values: a reply is kept
        as the model wrote it, placeholders and all.
        """
        for value, placeholder in sorted(
            ((v, p) for p, v in self._by_placeholder.items()), key=lambda item: -len(item[0])
        ):
            text = text.replace(value, placeholder)
        return text

    def mapping(self) -> dict[str, str]:
        """Placeholder → value, in the order minted: only for the owner's encrypted history
        vault (``api.stores.vault_keys``), never for a log or the database in the clear."""
        return dict(self._by_placeholder)

    def counts(self) -> dict[str, int]:
        """How many distinct values of each type were protected (no values)."""
        return dict(self._counters)

    def __len__(self) -> int:
        return len(self._by_placeholder)
