"""The sentence(s) of a passage that best answer a question, with the retriever's encoder.

A reader who distrusts a generated answer should see the handbook's own words beside it:
the retriever splits the best passage into sentences, embeds them with the encoder it
already holds (MiniLM; no other model), and quotes the two closest to the question, in the
passage's order. Chosen on the tuning slice of the handbook set (one, two or three
sentences; the best source or the best two; with or without word overlap): two sentences
of the best source put the hint's fact in the quote most often (``models/README.md``).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict

import numpy as np
import numpy.typing as npt

from index.base import TextEncoder

__all__ = ["QuoteFinder", "best_quote", "sentences"]

# A sentence ends at . ! ? followed by white space, or at a line break (list items, headings).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n+\s*")
# Fragments shorter than this (a heading, "Note:") are not worth quoting alone.
_MIN_WORDS = 3
_QUOTED_SENTENCES = 2
_MAX_QUOTE_CHARS = 600


def sentences(text: str) -> list[str]:
    """The passage's sentences (and list items), stripped of list markers, in order."""
    parts = [p.strip().lstrip("-*• ").strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if len(p.split()) >= _MIN_WORDS and not p.startswith("#")]


def best_quote(encoder: TextEncoder, question: str, passage: str) -> str:
    """The sentence(s) of ``passage`` closest to ``question``; empty when it has none."""
    candidates = sentences(passage)
    if not candidates:
        return ""
    vectors = encoder.encode([" ".join(question.split()), *candidates])
    return _pick(candidates, vectors[1:] @ vectors[0])


class QuoteFinder:
    """``best_quote`` for the retriever's hot path: the question's embedding is reused when
    the caller has it, and each passage's sentence embeddings are kept (a passage's text
    never changes; the most recent ``capacity`` passages), so a repeated source costs no
    encoder pass."""

    def __init__(self, encoder: TextEncoder, capacity: int = 2048) -> None:
        self._encoder = encoder
        self._capacity = capacity
        self._cache: OrderedDict[str, tuple[list[str], npt.NDArray[np.float32]]] = OrderedDict()
        self._lock = threading.Lock()

    def best(
        self,
        question: str,
        passage: str,
        *,
        question_vector: npt.NDArray[np.float32] | None = None,
    ) -> str:
        """The sentence(s) of ``passage`` closest to ``question``; empty when it has none."""
        candidates, vectors = self._sentences(passage)
        if not candidates:
            return ""
        if question_vector is None:
            question_vector = np.asarray(
                self._encoder.encode([" ".join(question.split())])[0], dtype=np.float32
            )
        return _pick(candidates, vectors @ question_vector)

    def _sentences(self, passage: str) -> tuple[list[str], npt.NDArray[np.float32]]:
        key = hashlib.sha256(passage.encode()).hexdigest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        candidates = sentences(passage)
        vectors = (
            np.asarray(self._encoder.encode(candidates), dtype=np.float32)
            if candidates
            else np.zeros((0, 0), dtype=np.float32)
        )
        with self._lock:
            self._cache[key] = (candidates, vectors)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return candidates, vectors


def _pick(candidates: list[str], scores: npt.NDArray[np.float32]) -> str:
    ranked = [int(i) for i in np.argsort(-scores, kind="stable")]
    chosen = sorted(ranked[:_QUOTED_SENTENCES])
    quote = " ".join(candidates[i] for i in chosen)
    return quote if len(quote) <= _MAX_QUOTE_CHARS else candidates[ranked[0]][:_MAX_QUOTE_CHARS]
