"""The retrieval contract and the plain data that crosses package (and Ray handle) boundaries.

Everything here is a frozen dataclass or a Protocol, cheap to import: ``api`` may import this
module, never the backends beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "Chunk",
    "Document",
    "Hit",
    "Retriever",
    "SearchResult",
    "TextEncoder",
]


@dataclass(frozen=True, slots=True)
class Document:
    """One source document of a knowledge base, as uploaded.

    ``text`` is the decoded source (Markdown, plain text or HTML markup; for a PDF, the text
    its pages yielded). ``doc_id`` is the caller's stable id, e.g. the file stem.
    """

    doc_id: str
    title: str
    source: str
    media_type: str
    text: str


@dataclass(frozen=True, slots=True)
class Chunk:
    """A retrievable piece of a document.

    ``start``/``end`` are character offsets into the document's *normalised* text (what
    :func:`index.parsing.parse_document` returns), so ``normalised[start:end] == text``.
    ``content_hash`` is the sha256 (hex) of ``text``.
    """

    chunk_id: str
    doc_id: str
    title: str
    heading_path: tuple[str, ...]
    start: int
    end: int
    text: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk found for a query, with its similarity score (higher is closer)."""

    chunk: Chunk
    score: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The hits of one query and the index version that produced all of them."""

    version: str
    hits: tuple[Hit, ...]


@runtime_checkable
class Retriever(Protocol):
    """Finds the chunks closest to a query."""

    def search(self, query: str, k: int = 5, min_score: float = 0.0) -> list[Hit]:
        """The best ``k`` hits scoring at least ``min_score``, best first."""
        ...


class TextEncoder(Protocol):
    """Turns texts into unit-length vectors, one row per text (``models.encoder`` fits)."""

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """A float32 array of shape ``(len(texts), dim)``, rows L2-normalised."""
        ...
