"""The sentence(s) of a passage that best answer a question, with the retriever's encoder.

A reader who distrusts a generated answer should see the handbook's own words beside it:
the retriever splits each retrieved passage into sentences, embeds them with the encoder it
already holds (MiniLM; no other model), and quotes the three closest to the question, in the
passage's order, from the *best source*: the passage whose closest sentence, blended with
the passage's own score (``_PASSAGE_WEIGHT``), answers best. Table rows are sentences of
their own, embedded under their table's header row ("Country | Probation period" gives
"Kenya | 6 months" its meaning); the header alone is never quoted.

A quote is the passage's own text: each run of neighbouring sentences is copied as written,
and runs that are not neighbours are joined by ``QUOTE_GAP`` (" … "), so a reader can find
every part in the passage (the portal highlights them). All of this was chosen on the
tuning slice of the handbook set (``benchmarks.quote_bench``; figures in
``models/README.md``).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index.base import TextEncoder

__all__ = ["QUOTE_GAP", "Quote", "QuoteFinder", "sentences"]

QUOTE_GAP = " … "
# A sentence ends at . ! ? followed by white space; a line is never part of two sentences.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LIST_MARKER = re.compile(r"[-*•]\s+")
# Fragments shorter than this (a heading, "Note:") are not worth quoting alone.
_MIN_WORDS = 3
_QUOTED_SENTENCES = 3
_MAX_QUOTE_CHARS = 600
# How much the passage's retrieval score counts against its best sentence's match when the
# best source is chosen among the retrieved passages (1.0: the retriever's order alone).
_PASSAGE_WEIGHT = 0.7


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A quotable sentence: where it is in the passage and what the encoder sees of it."""

    start: int
    end: int
    embedded: str


# A passage's quotable sentences and their embeddings (one row each).
_Embedded = tuple[list[_Candidate], npt.NDArray[np.float32]]


@dataclass(frozen=True, slots=True)
class Quote:
    """The sentence(s) of one passage closest to a question."""

    text: str
    """Verbatim runs of the passage, joined by ``QUOTE_GAP``; empty when it has none."""
    match: float = -1.0
    """Cosine similarity of the closest sentence to the question."""


def _is_table_row(line: str) -> bool:
    return " | " in line and not line.startswith("#")


def _candidates(text: str) -> list[_Candidate]:
    found: list[_Candidate] = []
    header: str | None = None
    offset = 0
    for raw_line in text.split("\n"):
        line_start, offset = offset, offset + len(raw_line) + 1
        line = raw_line.strip()
        if not line:
            header = None
            continue
        start = line_start + raw_line.index(line)
        if _is_table_row(line):
            if header is None:  # the first row of a table names its columns
                header = line
            else:
                found.append(_Candidate(start, start + len(line), f"{header}\n{line}"))
            continue
        header = None
        if line.startswith("#"):
            continue
        marker = _LIST_MARKER.match(line)
        if marker:
            start += marker.end()
            line = line[marker.end() :]
        cursor = 0
        for part in _SENTENCE_END.split(line):
            at = line.index(part, cursor)
            cursor = at + len(part)
            part_start = start + at
            if len(part.split()) >= _MIN_WORDS:
                found.append(_Candidate(part_start, part_start + len(part), part))
    return found


def sentences(text: str) -> list[str]:
    """The passage's quotable sentences, list items and table rows, in order (no headings,
    no table header rows, no list markers)."""
    return [text[c.start : c.end] for c in _candidates(text)]


def _quote(text: str, candidates: list[_Candidate], scores: npt.NDArray[np.float32]) -> Quote:
    ranked = [int(i) for i in np.argsort(-scores, kind="stable")]
    chosen = sorted(ranked[:_QUOTED_SENTENCES])
    runs: list[list[int]] = []
    for index in chosen:
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    quote = QUOTE_GAP.join(text[candidates[run[0]].start : candidates[run[-1]].end] for run in runs)
    if len(quote) > _MAX_QUOTE_CHARS:
        best = candidates[ranked[0]]
        quote = text[best.start : min(best.end, best.start + _MAX_QUOTE_CHARS)]
    return Quote(quote, float(scores[ranked[0]]))


class QuoteFinder:
    """Quotes for the retriever's hot path: the question's embedding is reused when the
    caller has it, and each passage's sentence embeddings are kept (a passage's text never
    changes; the most recent ``capacity`` passages), so a repeated source costs no encoder
    pass."""

    def __init__(self, encoder: TextEncoder, capacity: int = 2048) -> None:
        self._encoder = encoder
        self._capacity = capacity
        self._cache: OrderedDict[str, _Embedded] = OrderedDict()
        self._lock = threading.Lock()

    def best_source(
        self,
        question: str,
        passages: Sequence[tuple[str, float]],
        *,
        question_vector: npt.NDArray[np.float32] | None = None,
    ) -> tuple[int, Quote]:
        """Which of the retrieved ``passages`` (text, retrieval score; best first) answers
        ``question`` best, and its quote: the passage score blended with its closest
        sentence's match. Ties keep the retriever's order; no passages: ``(0, Quote(""))``."""
        if not passages:
            return 0, Quote("")
        vector = self._question_vector(question, question_vector)
        embedded = self._sentences([text for text, _ in passages])
        quotes = [
            _quote_of(text, found, vector)
            for (text, _), found in zip(passages, embedded, strict=True)
        ]
        blended = [
            _PASSAGE_WEIGHT * score + (1 - _PASSAGE_WEIGHT) * quote.match
            for (_, score), quote in zip(passages, quotes, strict=True)
        ]
        best = max(range(len(passages)), key=lambda i: (blended[i], -i))
        return best, quotes[best]

    def _question_vector(
        self, question: str, given: npt.NDArray[np.float32] | None
    ) -> npt.NDArray[np.float32]:
        if given is not None:
            return given
        return np.asarray(self._encoder.encode([" ".join(question.split())])[0], dtype=np.float32)

    def _sentences(self, passages: Sequence[str]) -> list[_Embedded]:
        """Each passage's sentences and their embeddings: from the cache, the rest split and
        embedded in one encoder call."""
        keys = [_key(text) for text in passages]
        found: dict[str, _Embedded] = {}
        with self._lock:
            for key in keys:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    found[key] = cached
        missing = {
            key: _candidates(text)
            for key, text in zip(keys, passages, strict=True)
            if key not in found
        }
        texts = [c.embedded for candidates in missing.values() for c in candidates]
        vectors = (
            np.asarray(self._encoder.encode(texts), dtype=np.float32)
            if texts
            else np.zeros((0, 0), dtype=np.float32)
        )
        offset = 0
        for key, candidates in missing.items():
            found[key] = (candidates, vectors[offset : offset + len(candidates)])
            offset += len(candidates)
        if missing:
            with self._lock:
                for key in missing:
                    self._cache[key] = found[key]
                    self._cache.move_to_end(key)
                while len(self._cache) > self._capacity:
                    self._cache.popitem(last=False)
        return [found[key] for key in keys]


def _quote_of(passage: str, embedded: _Embedded, question_vector: npt.NDArray[np.float32]) -> Quote:
    candidates, vectors = embedded
    if not candidates:
        return Quote("")
    return _quote(passage, candidates, vectors @ question_vector)


def _key(passage: str) -> str:
    return hashlib.sha256(passage.encode()).hexdigest()
