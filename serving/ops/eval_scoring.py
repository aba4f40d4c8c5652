"""How a handbook answer is judged: does it state the hint's fact, cite the right document,
loop? Deterministic rules, no model, so a figure moves only when the answers do.

* **Hint correctness** (:func:`states_hint`): every number of the hint appears in the answer
  as the same number ("36 GB" is not "32 GB"; "four" counts as 4; 10:00, 5,000 and 10.20
  are one number each), and every content word of the hint appears too (plural/singular and
  case aside; negations count: "not compliant" is not "compliant").
* **Citation correctness** (:func:`cites_relevant`): the answer has a ``[n]`` marker, every
  marker points at a source of the response, and one of them at a relevant document.
* **Degeneration** (:func:`loops`): six words three times (``api.chat.repetition``).

The held-back slice (:func:`held_back`): every fifth case of the handbook set (q005, q010,
…). Prompts and decoding settings are tuned on the rest; the figures in ``models/README.md``
are the held-back slice's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from api.chat.repetition import find_loop

__all__ = ["cited_numbers", "cites_relevant", "held_back", "loops", "states_hint"]

_HELD_BACK_EVERY = 5
_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "fifteen": "15",
    "twenty": "20",
    "thirty": "30",
    "sixty": "60",
}
# Words that carry no fact of their own; negations and quantifiers are not among them.
_STOPWORDS = frozenset(
    {
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "by",
        "with",
        "and",
        "or",
        "is",
        "are",
        "be",
        "it",
        "its",
        "your",
        "you",
        "our",
        "we",
        "this",
        "that",
        "as",
        "from",
    }
)
# A number: digits with inner separators (5,000  10.20  10:00), or a number word.
_TOKEN = re.compile(r"\d+(?:[.,:]\d+)*|[^\W\d_]+")
_MARKER = re.compile(r"\[(\d{1,2})\]")


def held_back(case_id: str) -> bool:
    """Whether a handbook case belongs to the held-back slice (never used for tuning)."""
    digits = "".join(ch for ch in case_id if ch.isdigit())
    return bool(digits) and int(digits) % _HELD_BACK_EVERY == 0


def _tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower().replace("n't", " not")
    return [_NUMBER_WORDS.get(token, token) for token in _TOKEN.findall(text)]


def _is_number(token: str) -> bool:
    return token[0].isdigit()


def _number_value(token: str) -> str:
    # "5,000" and "5000" are the same number; "10.20" keeps its decimals; "10:00" its colon.
    return token.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+", token) else token


def _stem(word: str) -> str:
    for suffix in ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def states_hint(answer: str, hint: str) -> bool:
    """Whether ``answer`` states the fact of ``hint`` (numbers exact, content words present)."""
    hint_tokens = [t for t in _tokens(hint) if t not in _STOPWORDS]
    if not hint_tokens:
        return False
    answer_tokens = _tokens(answer)
    numbers = {_number_value(t) for t in answer_tokens if _is_number(t)}
    words = {_stem(t) for t in answer_tokens if not _is_number(t)}
    return all(
        _number_value(t) in numbers if _is_number(t) else _stem(t) in words for t in hint_tokens
    )


def cited_numbers(answer: str) -> list[int]:
    """The ``[n]`` markers of an answer, in order, each once."""
    return list(dict.fromkeys(int(m.group(1)) for m in _MARKER.finditer(answer)))


def cites_relevant(
    answer: str, sources: Sequence[Mapping[str, Any]], relevant: Sequence[str]
) -> bool:
    """Whether the answer cites ``[n]`` markers that all point at a source of the response,
    one of them at a relevant document."""
    by_number = {int(s["number"]): str(s.get("document_id")) for s in sources if "number" in s}
    cited = cited_numbers(answer)
    if not cited or any(n not in by_number for n in cited):
        return False
    return any(by_number[n] in relevant for n in cited)


def loops(answer: str) -> bool:
    """Whether the answer repeats itself (six words three times or more)."""
    return find_loop(answer) is not None
