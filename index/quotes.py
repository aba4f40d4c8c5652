"""The sentence(s) of a passage that best answer a question, with the retriever's encoder.

A reader who distrusts a generated answer should see the handbook's own words beside it:
the retriever splits the best passage into sentences, embeds them with the encoder it
already holds (MiniLM; no other model), and quotes the two closest to the question, in the
passage's order. Chosen on the tuning slice of the handbook set (one, two or three
sentences; the best source or the best two; with or without word overlap): two sentences
of the best source put the hint's fact in the quote most often (``models/README.md``).
"""

from __future__ import annotations

import re

import numpy as np

from index.base import TextEncoder

__all__ = ["best_quote", "sentences"]

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
    scores = vectors[1:] @ vectors[0]
    ranked = [int(i) for i in np.argsort(-scores, kind="stable")]
    chosen = sorted(ranked[:_QUOTED_SENTENCES])
    quote = " ".join(candidates[i] for i in chosen)
    return quote if len(quote) <= _MAX_QUOTE_CHARS else candidates[ranked[0]][:_MAX_QUOTE_CHARS]
