"""Retrieval: parse, chunk and index a knowledge base's documents; search their chunks.

The package surface is the plain data, the ``Retriever`` Protocol, the errors, and the
standard-library readers and chunker. The backends pull in numpy and FAISS: import them
from their modules (``index.knowledge_base.KnowledgeBase``, ``index.faiss_index``).
"""

from __future__ import annotations

from index.base import Chunk, Document, Hit, Retriever, SearchResult, TextEncoder
from index.chunking import ChunkingOptions, chunk_document, content_hash, embedding_text
from index.errors import (
    CorruptDocument,
    DocumentError,
    EmptyDocument,
    IndexUnavailable,
    InvalidQuery,
    UnknownDocument,
    UnsupportedDocument,
)
from index.parsing import (
    MEDIA_TYPES,
    ParsedDocument,
    Section,
    document_from_bytes,
    media_type_of,
    parse_document,
    read_document,
)

__all__ = [
    "MEDIA_TYPES",
    "Chunk",
    "ChunkingOptions",
    "CorruptDocument",
    "Document",
    "DocumentError",
    "EmptyDocument",
    "Hit",
    "IndexUnavailable",
    "InvalidQuery",
    "ParsedDocument",
    "Retriever",
    "SearchResult",
    "Section",
    "TextEncoder",
    "UnknownDocument",
    "UnsupportedDocument",
    "chunk_document",
    "content_hash",
    "document_from_bytes",
    "embedding_text",
    "media_type_of",
    "parse_document",
    "read_document",
]
