"""Split a parsed document into overlapping chunks along its headings and paragraphs.

Rules (deterministic: the same document and options always give the same chunks):

* A chunk never crosses a section (a heading starts a new chunk), so each chunk has one
  heading path. A section of at most ``max_words`` words is one chunk.
* A longer section is cut into ``m`` windows of about equal length (``m`` the fewest that
  keep each near ``target_words``); each cut falls on the nearest paragraph or line break,
  else sentence end, within a quarter window of the ideal place, never inside a word, and
  never past ``max_words``.
* Consecutive windows of a section share about ``overlap_words`` words; the overlap starts
  at a sentence start when one lies within ten words of the ideal place.
* ``Chunk.start``/``end`` index into the normalised document text; ``content_hash`` is the
  sha256 of the chunk text (already normalised: NFC, single spaces).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

from index.base import Chunk
from index.parsing import ParsedDocument, Section

__all__ = ["ChunkingOptions", "chunk_document", "content_hash", "embedding_text"]

_WORD = re.compile(r"\S+")
_SENTENCE_END = (".", "!", "?", ":", ";")


@dataclass(frozen=True, slots=True)
class ChunkingOptions:
    """Chunk sizes, in words (whitespace-separated tokens)."""

    target_words: int = 160
    max_words: int = 200
    overlap_words: int = 30

    def __post_init__(self) -> None:
        if not 0 <= self.overlap_words < self.target_words <= self.max_words:
            msg = (
                "chunking needs 0 <= overlap_words < target_words <= max_words, got "
                f"{self.overlap_words}, {self.target_words}, {self.max_words}"
            )
            raise ValueError(msg)


def content_hash(text: str) -> str:
    """Hex sha256 of a (normalised) text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embedding_text(chunk: Chunk) -> str:
    """What the encoder sees: the title and heading path, then the chunk text.

    The context line lets a chunk that never names its topic ("Jobs are deleted after 24
    hours") still be found by a question about that topic ("print queue retention").
    """
    context = [chunk.title, *(h for h in chunk.heading_path if h != chunk.title)]
    return " > ".join(part for part in context if part) + "\n" + chunk.text


def _break_rank(text: str, words: list[tuple[int, int]], cut: int) -> int:
    """How good a cut before word ``cut`` is: 2 paragraph/line break, 1 sentence end, 0 other."""
    gap = text[words[cut - 1][1] : words[cut][0]]
    if "\n" in gap:
        return 2
    return 1 if text[words[cut - 1][1] - 1] in _SENTENCE_END else 0


def _windows(text: str, words: list[tuple[int, int]], options: ChunkingOptions) -> list[range]:
    n = len(words)
    if n <= options.max_words:
        return [range(n)]
    step = options.target_words - options.overlap_words
    count = max(2, math.ceil((n - options.overlap_words) / step))
    ideal = (n + (count - 1) * options.overlap_words) / count
    slack = max(1, int(ideal / 4))
    windows: list[range] = []
    start = 0
    while n - start > options.max_words:
        aim = min(start + round(ideal), n - 1)
        low = max(start + options.overlap_words + 1, aim - slack)
        high = min(start + options.max_words, aim + slack, n - 1)
        cuts = range(low, high + 1) if low <= high else range(aim, aim + 1)
        # The best kind of break; among equals, the one nearest the ideal place.
        cut = max(cuts, key=lambda c: (_break_rank(text, words, c), -abs(c - aim), -c))
        windows.append(range(start, cut))
        start = _overlap_start(text, words, cut, options.overlap_words, floor=start + 1)
    windows.append(range(start, n))
    return windows


def _overlap_start(
    text: str, words: list[tuple[int, int]], cut: int, overlap: int, *, floor: int
) -> int:
    if overlap == 0:
        return cut
    aim = max(floor, cut - overlap)
    for distance in range(11):
        for candidate in (aim - distance, aim + distance):
            if floor <= candidate < cut and _break_rank(text, words, candidate) > 0:
                return candidate
    return aim


def _section_chunks(
    doc_id: str,
    title: str,
    section: Section,
    options: ChunkingOptions,
    *,
    first_ordinal: int,
    document_text: str,
) -> list[Chunk]:
    words = [(m.start(), m.end()) for m in _WORD.finditer(section.text)]
    chunks: list[Chunk] = []
    for window in _windows(section.text, words, options) if words else []:
        start = section.start + words[window.start][0]
        end = section.start + words[window.stop - 1][1]
        text = document_text[start:end]
        digest = content_hash(text)
        ordinal = first_ordinal + len(chunks)
        chunks.append(
            Chunk(
                chunk_id=f"{doc_id}#{ordinal}-{digest[:8]}",
                doc_id=doc_id,
                title=title,
                heading_path=section.heading_path,
                start=start,
                end=end,
                text=text,
                content_hash=digest,
            )
        )
    return chunks


def chunk_document(
    doc_id: str, parsed: ParsedDocument, options: ChunkingOptions | None = None
) -> list[Chunk]:
    """The chunks of a parsed document, in document order (rules in the module docstring)."""
    options = options or ChunkingOptions()
    chunks: list[Chunk] = []
    for section in parsed.sections:
        chunks.extend(
            _section_chunks(
                doc_id,
                parsed.title,
                section,
                options,
                first_ordinal=len(chunks),
                document_text=parsed.text,
            )
        )
    return chunks
