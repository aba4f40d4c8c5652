"""The organisation's own places are not personal data — unless a person's life is attached.

A tenant's allow-list of places (its offices, the cities its knowledge bases name) keeps
"What does the Toronto office do on Fridays?" readable for the model. A place on that list
is still protected where the words before it make it a person's ("I live in Toronto", "my
home town is Lisbon", "born in Nairobi"), and a place not on it is protected everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence

from models.pii.base import PIISpan

__all__ = ["PlaceAllowList", "normalise_place"]

_SPACES = re.compile(r"\s+")
_POSSESSIVE = re.compile(r"['’]s$")
# Words that tie the place that follows to a person: where they live, come from, were born,
# or have family. Read within the same sentence, up to ~60 characters before the place.
_PERSONAL = re.compile(
    r"\b(?:live[sd]?|living|reside[sd]?|residing|born|grew up|raised|moved|moving|"
    r"relocat\w*|transferr?\w*|home\s*town|hometown|(?:my|our|his|her|their) home|address|family|"
    r"parents|house|flat|apartment|(?:am|i'm|i’m|is|are|was|come|comes|came|originally) from)"
    r"\b[^.?!\n]{0,30}$",
    re.IGNORECASE,
)
_LOOKBEHIND = 60


def normalise_place(name: str) -> str:
    """The comparable form of a place name: case-folded, possessive and extra spaces gone."""
    return _POSSESSIVE.sub("", _SPACES.sub(" ", name.strip())).casefold()


class PlaceAllowList:
    """A tenant's places that are not personal data when a message names them."""

    def __init__(self, places: Iterable[str] = ()) -> None:
        self._places = frozenset(p for p in (normalise_place(n) for n in places) if p)

    def __bool__(self) -> bool:
        return bool(self._places)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalise_place(name) in self._places

    @property
    def places(self) -> Collection[str]:
        """The normalised places on the list."""
        return self._places

    def personal(self, text: str, start: int) -> bool:
        """Whether the words before ``text[start:]`` make the place a person's."""
        return _PERSONAL.search(text[max(0, start - _LOOKBEHIND) : start]) is not None

    def keep_protected(self, text: str, spans: Sequence[PIISpan]) -> tuple[PIISpan, ...]:
        """``spans`` without the allowed places that are not in a personal context: words
        before them that tie them to a person's life, or a person named in their sentence
        ("Desk phone for Inês Carvalho in Lisbon")."""
        if not self._places:
            return tuple(spans)
        people = [s for s in spans if s.entity_type == "PERSON"]

        def with_a_person(span: PIISpan) -> bool:
            start, end = _sentence(text, span.start, span.end)
            return any(start <= p.start and p.end <= end for p in people)

        return tuple(
            span
            for span in spans
            if span.entity_type != "LOCATION"
            or text[span.start : span.end] not in self
            or self.personal(text, span.start)
            or with_a_person(span)
        )


_SENTENCE_END = re.compile(r"[.?!\n](?:\s|$)")


def _sentence(text: str, start: int, end: int) -> tuple[int, int]:
    """Bounds of the sentence around ``text[start:end]``."""
    before = [m.end() for m in _SENTENCE_END.finditer(text, 0, start)]
    after = _SENTENCE_END.search(text, end)
    return (before[-1] if before else 0), (after.start() if after else len(text))
