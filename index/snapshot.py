"""One immutable version of a knowledge base: its documents, chunks and vectors.

A version folder holds ``index.faiss`` (the vectors) and ``chunks.json`` (documents,
chunks and how they were made). Chunk metadata lives in that JSON file and in memory for
now; it moves to the SQL store later.

Readers take a reference to a snapshot and use only it, so every hit of one search comes
from one version, whatever writers publish meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from index.base import Chunk, Document
from index.chunking import ChunkingOptions
from index.errors import IndexUnavailable
from index.faiss_index import HNSWOptions, VectorIndex, Vectors, vector_id

__all__ = ["CHUNKS_FILE", "INDEX_FILE", "IndexSnapshot"]

INDEX_FILE = "index.faiss"
CHUNKS_FILE = "chunks.json"
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class _Entry:
    chunk: Chunk
    embed_key: str


@dataclass(frozen=True)
class IndexSnapshot:
    """Documents, chunks (with the key their vector is cached under) and the vector index."""

    version: str
    encoder_id: str
    chunking: ChunkingOptions
    documents: Mapping[str, Document]
    chunks: tuple[Chunk, ...]
    embed_keys: tuple[str, ...]
    vectors: VectorIndex | None
    _by_vector_id: Mapping[int, int] = field(default_factory=dict, repr=False)
    _by_key: Mapping[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def empty(cls, encoder_id: str, chunking: ChunkingOptions) -> IndexSnapshot:
        """A knowledge base with nothing in it (version ``"empty"``)."""
        return cls.assemble(
            "empty",
            encoder_id=encoder_id,
            chunking=chunking,
            documents={},
            chunks=[],
            embed_keys=[],
            vectors=None,
        )

    @classmethod
    def assemble(
        cls,
        version: str,
        *,
        encoder_id: str,
        chunking: ChunkingOptions,
        documents: Mapping[str, Document],
        chunks: list[Chunk],
        embed_keys: list[str],
        vectors: VectorIndex | None,
    ) -> IndexSnapshot:
        """A snapshot with its lookup tables; ``vectors`` row ids are ``vector_id(chunk_id)``."""
        by_vector_id = {vector_id(c.chunk_id): row for row, c in enumerate(chunks)}
        if len(by_vector_id) != len(chunks):
            msg = "two chunks share a vector id (duplicate chunk ids?)"
            raise ValueError(msg)
        return cls(
            version=version,
            encoder_id=encoder_id,
            chunking=chunking,
            documents=MappingProxyType(dict(documents)),
            chunks=tuple(chunks),
            embed_keys=tuple(embed_keys),
            vectors=vectors,
            _by_vector_id=MappingProxyType(by_vector_id),
            _by_key=MappingProxyType({key: row for row, key in enumerate(embed_keys)}),
        )

    def chunk_for_vector(self, vid: int) -> Chunk | None:
        """The chunk stored under a vector id, if it is in this version."""
        row = self._by_vector_id.get(vid)
        return None if row is None else self.chunks[row]

    def vectors_for_keys(self, keys: list[str]) -> dict[str, Vectors]:
        """Vectors this version already holds for any of ``keys`` (read back, not encoded)."""
        rows = {key: self._by_key[key] for key in keys if key in self._by_key}
        if not rows or self.vectors is None:
            return {}
        ids = np.array([vector_id(self.chunks[row].chunk_id) for row in rows.values()])
        found = self.vectors.vectors(ids)
        return {key: found[i] for i, key in enumerate(rows)}

    # Persistence --------------------------------------------------------------------------
    def write(self, folder: Path, hnsw: HNSWOptions) -> None:
        """Write ``index.faiss`` and ``chunks.json`` into ``folder``."""
        by_doc: dict[str, list[dict[str, Any]]] = {doc_id: [] for doc_id in self.documents}
        for chunk, key in zip(self.chunks, self.embed_keys, strict=True):
            item = asdict(chunk)
            item["embed_key"] = key
            by_doc[chunk.doc_id].append(item)
        body = {
            "format": _FORMAT,
            "version": self.version,
            "encoder": self.encoder_id,
            "dim": self.vectors.dim if self.vectors is not None else 0,
            "chunking": asdict(self.chunking),
            "hnsw": asdict(hnsw),
            "documents": [
                {**asdict(document), "chunks": by_doc[doc_id]}
                for doc_id, document in sorted(self.documents.items())
            ],
        }
        (folder / CHUNKS_FILE).write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
        if self.vectors is not None:
            self.vectors.save(folder / INDEX_FILE)

    @classmethod
    def read(cls, folder: Path, version: str, hnsw: HNSWOptions) -> IndexSnapshot:
        """Load a version folder written by :meth:`write`."""
        try:
            body = json.loads((folder / CHUNKS_FILE).read_text(encoding="utf-8"))
            if body.get("format") != _FORMAT:
                msg = f"unknown format {body.get('format')!r}"
                raise ValueError(msg)
            documents: dict[str, Document] = {}
            chunks: list[Chunk] = []
            keys: list[str] = []
            for item in body["documents"]:
                raw_chunks = item.pop("chunks")
                documents[item["doc_id"]] = Document(**item)
                for raw in raw_chunks:
                    keys.append(raw.pop("embed_key"))
                    raw["heading_path"] = tuple(raw["heading_path"])
                    chunks.append(Chunk(**raw))
            chunking = ChunkingOptions(**body["chunking"])
            encoder_id = str(body["encoder"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            msg = f"The index metadata in {folder} cannot be read ({exc}); re-index."
            raise IndexUnavailable(msg) from exc
        vectors = VectorIndex.load(folder / INDEX_FILE, hnsw) if chunks else None
        if vectors is not None and len(vectors) != len(chunks):
            msg = f"{folder}: {len(vectors)} vectors for {len(chunks)} chunks; re-index."
            raise IndexUnavailable(msg)
        return cls.assemble(
            version,
            encoder_id=encoder_id,
            chunking=chunking,
            documents=documents,
            chunks=chunks,
            embed_keys=keys,
            vectors=vectors,
        )
