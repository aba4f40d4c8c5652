"""Errors of the retrieval package, placed in the tree of ``core.errors``.

The tree (status codes are on the classes; ``api/errors.py`` maps them)::

    InvalidRequest (core)             400
    ├── DocumentError                 400  a document cannot be indexed; names the document
    │   ├── UnsupportedDocument       415  a type we do not read (or its reader is missing)
    │   ├── CorruptDocument           400  the bytes do not parse as the type they claim
    │   └── EmptyDocument             400  parsed, but holds no text to index
    └── InvalidQuery                  400  an empty query, or k out of range
    NotFound (core)                   404
    ├── UnknownDocument               404  no document with that id in the knowledge base
    └── UnknownKnowledgeBase          404  the tenant has no knowledge base of that name
    ServiceUnavailable (core)         503
    └── IndexUnavailable              503  the stored index is missing or unreadable
"""

from __future__ import annotations

from typing import Any

from core.errors import InvalidRequest, NotFound, ServiceUnavailable

__all__ = [
    "CorruptDocument",
    "DocumentError",
    "EmptyDocument",
    "IndexUnavailable",
    "InvalidQuery",
    "UnknownDocument",
    "UnknownKnowledgeBase",
    "UnsupportedDocument",
]


class DocumentError(InvalidRequest):
    """A document cannot be indexed; ``extra`` names it (``source``)."""

    title = "Document cannot be indexed"
    type_slug = "document-error"

    def __init__(self, detail: str, *, source: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail, extra={"source": source, **(extra or {})})
        self.source = source


class UnsupportedDocument(DocumentError):
    """The document's type is not one we read, or the library that reads it is missing."""

    status_code = 415
    title = "Unsupported document type"
    type_slug = "unsupported-document"


class CorruptDocument(DocumentError):
    """The document's bytes do not parse as the type they claim to be."""

    title = "Corrupt document"
    type_slug = "corrupt-document"


class EmptyDocument(DocumentError):
    """The document parsed but holds no text to index."""

    title = "Empty document"
    type_slug = "empty-document"


class InvalidQuery(InvalidRequest):
    """A search request that cannot be answered as asked (empty query, bad ``k``)."""

    title = "Invalid search"
    type_slug = "invalid-query"


class UnknownDocument(NotFound):
    """No document with that id is in the knowledge base."""

    title = "Unknown document"
    type_slug = "unknown-document"


class UnknownKnowledgeBase(NotFound):
    """The tenant has no knowledge base of that name."""

    title = "Unknown knowledge base"
    type_slug = "unknown-knowledge-base"


class IndexUnavailable(ServiceUnavailable):
    """The stored index is missing or unreadable; answers go on without documents."""

    title = "Retrieval index unavailable"
    type_slug = "index-unavailable"
