"""The places a tenant's documents name: the seed of its PII allow-list of places.

A handbook names the organisation's offices and the cities it works in ("the Toronto
office", "staff employed in Kenya"); questions about them are not personal data. The PII
scanner finds the places (``LOCATION`` spans); this module turns those spans into a short,
reviewable list, which ``enclave kb places --apply`` stores as the tenant's runtime
configuration (``pii.allow_places``: visible, versioned, overridable).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["NamedPlace", "places_named"]

_SPACES = re.compile(r"\s+")
_POSSESSIVE = re.compile(r"['’]s$")
_MAX_WORDS = 4


@dataclass(frozen=True, slots=True)
class NamedPlace:
    """A place the documents name, as most often written, and in how many documents."""

    name: str
    documents: int


def _clean(text: str) -> str | None:
    name = _POSSESSIVE.sub("", _SPACES.sub(" ", text.strip(" \t\n.,;:()[]\"'")))
    words = name.split(" ")
    # A place name is capitalised, short and has no digits ("Sev2", "Building 7" are not
    # cities); anything else the scanner tagged is noise, not an allow-list entry.
    if (
        len(name) < 2
        or len(words) > _MAX_WORDS
        or not name[:1].isupper()
        or any(ch.isdigit() for ch in name)
        or any(ch in name for ch in "<>@/\\")
    ):
        return None
    return name


def places_named(
    texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int, str]]], *, min_documents: int = 1
) -> list[NamedPlace]:
    """Distinct places among the ``LOCATION`` spans of ``texts`` (one span list per text),
    named in at least ``min_documents`` of them; most widely named first, then by name."""
    documents: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = {}
    for text, found in zip(texts, spans, strict=True):
        seen: set[str] = set()
        for start, end, kind in found:
            if kind != "LOCATION":
                continue
            name = _clean(text[start:end])
            if name is None:
                continue
            key = name.casefold()
            spellings.setdefault(key, Counter())[name] += 1
            seen.add(key)
        documents.update(seen)
    named = [
        NamedPlace(spellings[key].most_common(1)[0][0], count)
        for key, count in documents.items()
        if count >= min_documents
    ]
    return sorted(named, key=lambda p: (-p.documents, p.name))
