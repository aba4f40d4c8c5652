"""The retrieval contract and the plain data that crosses package (and Ray handle) boundaries.

Everything here is a frozen dataclass or a Protocol, cheap to import: ``api`` may import this
module, never the backends beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "Chunk",
    "Document",
    "DocumentInfo",
    "Hit",
    "IngestOutcome",
    "KnowledgeBaseInfo",
    "KnowledgeService",
    "Passage",
    "PiiPolicy",
    "RetrievalResult",
    "Retriever",
    "SearchResult",
    "Source",
    "SpanFinder",
    "TextEncoder",
    "UploadedFile",
]

PiiPolicy = Literal["keep", "redact", "reject"]


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


# What crosses the retriever deployment's handle -------------------------------------------


@dataclass(frozen=True, slots=True)
class KnowledgeBaseInfo:
    """A knowledge base as the admin API shows it."""

    name: str
    tenant: str
    description: str
    pii_policy: PiiPolicy
    version: str | None
    documents: int
    rejected_documents: int
    chunks: int
    created_by: str
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """One document of a knowledge base and what ingestion did with it (no PII values)."""

    doc_id: str
    title: str
    source: str
    media_type: str
    size_bytes: int
    content_hash: str
    status: Literal["indexed", "rejected"]
    status_reason: str | None
    pii_found: dict[str, int]
    pii_action: PiiPolicy
    chunks: int
    uploaded_by: str
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file as uploaded: its name (the document id comes from it) and its bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What a change to a knowledge base published."""

    version: str | None
    documents: tuple[DocumentInfo, ...]
    chunks: int
    embedded: int
    reused: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Source:
    """A retrieved chunk, as cited by an answer."""

    knowledge_base: str
    doc_id: str
    title: str
    chunk_id: str
    score: float
    heading_path: tuple[str, ...] = ()
    text: str = field(default="", repr=False)
    quote: str = ""
    """The best source only: its sentence(s) that best answer the question (``index.quotes``)."""


@dataclass(frozen=True, slots=True)
class RetrievalResult:
    """The chunks found for one query, and the index version that produced them."""

    version: str | None
    sources: tuple[Source, ...]
    search_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Passage:
    """One chunk with its document's details, to open a citation."""

    knowledge_base: str
    doc_id: str
    title: str
    chunk_id: str
    heading_path: tuple[str, ...]
    start: int
    end: int
    text: str


class SpanFinder(Protocol):
    """Finds PII in documents at ingestion: ``(start, end, entity_type)`` per value."""

    async def find(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        """One sorted, non-overlapping span list per text."""
        ...


class KnowledgeService(Protocol):
    """Tenant knowledge bases: administration, ingestion and retrieval.

    Every call is scoped by ``tenant``: a knowledge base of another tenant is not found.
    """

    async def create_base(
        self,
        tenant: str,
        name: str,
        *,
        description: str = "",
        pii_policy: PiiPolicy | None = None,
        actor: str = "system",
    ) -> KnowledgeBaseInfo:
        """Create an empty knowledge base (``Conflict`` if the name is taken)."""
        ...

    async def list_bases(self, tenant: str) -> list[KnowledgeBaseInfo]:
        """The tenant's knowledge bases, by name."""
        ...

    async def get_base(self, tenant: str, name: str) -> KnowledgeBaseInfo:
        """One knowledge base (``NotFound`` if absent)."""
        ...

    async def delete_base(self, tenant: str, name: str) -> None:
        """Delete a knowledge base, its documents, chunks and index files."""
        ...

    async def upload(
        self, tenant: str, name: str, files: list[UploadedFile], *, actor: str = "system"
    ) -> IngestOutcome:
        """Parse, PII-check, chunk, embed and index files, all or nothing."""
        ...

    async def list_documents(self, tenant: str, name: str) -> list[DocumentInfo]:
        """The documents of a knowledge base with their status."""
        ...

    async def delete_document(self, tenant: str, name: str, doc_id: str) -> IngestOutcome:
        """Remove a document and its vectors."""
        ...

    async def reindex(self, tenant: str, name: str) -> IngestOutcome:
        """Re-chunk and re-index every document into a new version, swapped in atomically."""
        ...

    async def retrieve(
        self,
        tenant: str,
        name: str,
        query: str,
        *,
        k: int,
        min_score: float,
        embedding: bytes = b"",
        embedding_model: str = "",
    ) -> RetrievalResult:
        """The best ``k`` chunks scoring at least ``min_score`` (``embedding``: the query's,
        made by ``embedding_model``, reused when it is the knowledge base's encoder)."""
        ...

    async def passage(self, tenant: str, name: str, chunk_id: str) -> Passage:
        """One chunk's text and place in its document."""
        ...

    async def check_health(self) -> None:
        """Raise if the service cannot answer."""
        ...
