"""Personal-name knowledge for the PII scanner, from Faker's per-locale name lists.

The small spaCy model misses many names from outside the English-speaking world, tags some
as places, and tags capitalised words at the start of a sentence as people. Faker (a
well-kept package, offline data) knows first and last names of some 80 locales; the scanner
uses them to find names spaCy missed and to drop "names" that contain no name.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["NameLexicon", "name_lexicon"]

_LATIN_NAME = re.compile(r"^[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'’\-]+$")
_PARTICLES = {
    "de",
    "da",
    "del",
    "della",
    "der",
    "van",
    "von",
    "bin",
    "binti",
    "al",
    "la",
    "le",
    "dos",
    "das",
    "do",
    "di",
    "du",
    "ter",
    "ten",
    "y",
}


def _names(value: object) -> Iterable[str]:
    if isinstance(value, dict):
        return (str(k) for k in value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return (str(v) for v in value)
    return ()


class NameLexicon:
    """Known first and last names (Latin script, capitalised)."""

    def __init__(self, first: set[str], last: set[str]) -> None:
        self.first = first
        self.last = last

    def is_first(self, token: str) -> bool:
        """Whether ``token`` is a known first name."""
        return token in self.first

    def is_name(self, token: str) -> bool:
        """Whether ``token`` is a known first or last name."""
        return token in self.first or token in self.last

    @staticmethod
    def is_particle(token: str) -> bool:
        """Lower-case name particles (de, van, bin, …)."""
        return token in _PARTICLES


@lru_cache(maxsize=1)
def name_lexicon() -> NameLexicon:
    """The lexicon, built once per process (about 0.3 s)."""
    from faker.providers import person

    first: set[str] = set()
    last: set[str] = set()
    for module_info in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"{person.__name__}.{module_info.name}").Provider
        for attribute, bucket in (
            ("first_names", first),
            ("first_names_male", first),
            ("first_names_female", first),
            ("first_romanized_names", first),
            ("last_names", last),
            ("last_romanized_names", last),
        ):
            for name in _names(getattr(provider, attribute, ())):
                if _LATIN_NAME.match(name) and len(name) >= 2:
                    bucket.add(name)
    return NameLexicon(first, last)
