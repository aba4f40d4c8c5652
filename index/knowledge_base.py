"""A knowledge base: ingest, delete and re-index documents; search their chunks.

Every change (add, replace, delete, re-index) builds a complete new version — parse, chunk,
embed what is new, build the HNSW index — writes it beside the old one and swaps the
``CURRENT`` pointer (``index.store``); searches run on whichever immutable snapshot was
live when they started (``index.snapshot``), so they never see half a change.

Storage for now: chunk metadata (and each document's source text, so that a re-index needs
nothing else) is kept in memory and in ``chunks.json`` beside ``index.faiss`` in each
version folder. It moves to the SQL store later; this module is the only one that knows.

Embeddings are cached by the hash of the exact text the encoder sees (encoder id, title,
heading path and chunk text): identical chunks are embedded once, and vectors already in
the live index are read back from it instead of being encoded again. The encoder is called
by one thread at a time, in small batches, so queries are not stuck behind a re-index.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.base import Chunk, Document, Hit, SearchResult, TextEncoder
from index.chunking import ChunkingOptions, chunk_document, embedding_text
from index.errors import DocumentError, InvalidQuery, UnknownDocument
from index.faiss_index import HNSWOptions, VectorIndex, Vectors, vector_id
from index.parsing import check_doc_id, parse_document, read_document
from index.snapshot import IndexSnapshot
from index.store import VersionedFolder

__all__ = ["MAX_K", "IngestReport", "KnowledgeBase", "embed_key"]

MAX_K = 100
_log = logging.getLogger("enclave.index")


def embed_key(encoder_id: str, text: str) -> str:
    """The cache key of a text's vector under one encoder."""
    return hashlib.sha256(f"{encoder_id}\x00{text}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What a change published: the new version and how much work it took."""

    version: str
    documents: int
    chunks: int
    encoded: int
    reused: int
    seconds: float


class _VectorCache:
    """A bounded least-recently-used map from embedding key to vector (writers only)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, Vectors] = OrderedDict()

    def get(self, key: str) -> Vectors | None:
        vector = self._items.get(key)
        if vector is not None:
            self._items.move_to_end(key)
        return vector

    def put(self, key: str, vector: Vectors) -> None:
        self._items[key] = vector
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)


class KnowledgeBase:
    """The documents of one knowledge base and a versioned vector index over their chunks.

    ``root`` is the knowledge base's own folder; ``encoder_id`` names the encoder (a stored
    index built with another one is re-embedded on open). ``chunking`` None keeps what the
    stored index used; other options re-chunk on open. Reads are lock-free on the live
    snapshot; changes are serialised (one writer per folder).
    """

    def __init__(
        self,
        root: Path,
        encoder: TextEncoder,
        *,
        encoder_id: str,
        chunking: ChunkingOptions | None = None,
        hnsw: HNSWOptions | None = None,
        keep_versions: int = 3,
        cache_size: int = 20_000,
        encode_batch: int = 32,
    ) -> None:
        if encode_batch < 1 or cache_size < 1:
            msg = f"encode_batch and cache_size must be >= 1, got {encode_batch}, {cache_size}"
            raise ValueError(msg)
        self._encoder = encoder
        self._encode_batch = encode_batch
        # Encoders need not be thread-safe (a shared fast tokenizer is not): one call at a
        # time, and writers encode in small batches so that queries slip in between.
        self._encode_lock = threading.Lock()
        self._encoder_id = encoder_id
        self._hnsw = hnsw or HNSWOptions()
        self._folder = VersionedFolder(root, keep=keep_versions)
        self._cache = _VectorCache(cache_size)
        self._write_lock = threading.Lock()
        for name in self._folder.remove_staging():
            _log.warning("removed an unfinished index build %s", name)
        version = self._folder.current()
        if version is None:
            self._snapshot = IndexSnapshot.empty(encoder_id, chunking or ChunkingOptions())
            return
        self._snapshot = IndexSnapshot.read(self._folder.path_of(version), version, self._hnsw)
        stale_encoder = self._snapshot.encoder_id != encoder_id
        if stale_encoder or (chunking is not None and chunking != self._snapshot.chunking):
            _log.warning("index %s was built differently; re-indexing", version)
            self.reindex(chunking)

    # Reading --------------------------------------------------------------------------------
    @property
    def snapshot(self) -> IndexSnapshot:
        """The live version (immutable; hold on to it to read one consistent version)."""
        return self._snapshot

    @property
    def version(self) -> str:
        """The live version's name (``"empty"`` before the first change)."""
        return self._snapshot.version

    def documents(self) -> list[Document]:
        """The documents of the live version, by id."""
        snapshot = self._snapshot
        return [snapshot.documents[doc_id] for doc_id in sorted(snapshot.documents)]

    def query(
        self, query: str, k: int = 5, min_score: float = 0.0, *, vector: Vectors | None = None
    ) -> SearchResult:
        """The best ``k`` chunks scoring at least ``min_score`` and the version searched;
        ``vector``: the query's embedding, already made by this knowledge base's encoder."""
        vectors = None if vector is None else vector.reshape(1, -1)
        return self.query_batch([query], k, min_score, vectors=vectors)[0]

    def query_batch(
        self,
        queries: Sequence[str],
        k: int = 5,
        min_score: float = 0.0,
        *,
        vectors: Vectors | None = None,
    ) -> list[SearchResult]:
        """:meth:`query` for several queries at once (one encoder call), all on one version."""
        texts = [" ".join(query.split()) for query in queries]
        if not all(texts):
            msg = "The search query is empty."
            raise InvalidQuery(msg)
        if not 1 <= k <= MAX_K:
            msg = f"k must be between 1 and {MAX_K}, got {k}."
            raise InvalidQuery(msg)
        snapshot = self._snapshot  # one read: everything below uses this version only
        if snapshot.vectors is None or not texts:
            return [SearchResult(snapshot.version, ()) for _ in texts]
        embedded = self._encode(texts) if vectors is None else vectors
        scores, ids = snapshot.vectors.search(embedded, min(k, len(snapshot.chunks)))
        results: list[SearchResult] = []
        for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True):
            hits: list[Hit] = []
            for score, vid in zip(row_scores, row_ids, strict=True):
                chunk = snapshot.chunk_for_vector(vid) if vid >= 0 else None
                if chunk is not None and score >= min_score:
                    hits.append(Hit(chunk=chunk, score=float(score)))
            results.append(SearchResult(snapshot.version, tuple(hits)))
        return results

    def search(self, query: str, k: int = 5, min_score: float = 0.0) -> list[Hit]:
        """The best ``k`` hits scoring at least ``min_score``, best first (``Retriever``)."""
        return list(self.query(query, k, min_score).hits)

    def refresh(self) -> bool:
        """Load the live version if another process published a newer one; True if it did.

        Several replicas may serve one knowledge base; only one writes at a time (a file
        lock), and the others pick its version up here.
        """
        version = self._folder.current()
        if version is None or version == self._snapshot.version:
            return False
        snapshot = IndexSnapshot.read(self._folder.path_of(version), version, self._hnsw)
        self._snapshot = snapshot
        return True

    # Changing -------------------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[IndexSnapshot]:
        """One writer per folder: this process's lock, then an exclusive file lock shared
        with other processes; the newest published version is loaded before changing it."""
        with self._write_lock:
            self._folder.root.mkdir(parents=True, exist_ok=True)
            with (self._folder.root / ".write-lock").open("a") as lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                try:
                    self.refresh()
                    yield self._snapshot
                finally:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def add_documents(self, documents: Iterable[Document]) -> IngestReport:
        """Add documents, replacing any with the same id, and publish a new version."""
        incoming: dict[str, Document] = {}
        for document in documents:
            check_doc_id(document.doc_id, source=document.source)
            if document.doc_id in incoming:
                msg = f"Document id {document.doc_id!r} appears twice in one upload."
                raise DocumentError(msg, source=document.source)
            incoming[document.doc_id] = document
        with self._writing() as current:
            kept = {d: doc for d, doc in current.documents.items() if d not in incoming}
            return self._publish({**kept, **incoming}, current.chunking, set(incoming))

    def add_files(self, paths: Iterable[Path]) -> IngestReport:
        """Read files (ids from their names) and add them as one change."""
        return self.add_documents(read_document(path) for path in paths)

    def delete_document(self, doc_id: str) -> IngestReport:
        """Remove a document and its vectors (the index is rebuilt without them)."""
        with self._writing() as current:
            if doc_id not in current.documents:
                msg = f"No document {doc_id!r} in this knowledge base."
                raise UnknownDocument(msg, extra={"doc_id": doc_id})
            kept = {d: doc for d, doc in current.documents.items() if d != doc_id}
            return self._publish(kept, current.chunking, set())

    def reindex(self, chunking: ChunkingOptions | None = None) -> IngestReport:
        """Parse, chunk and index every document again (with new chunking options if given)."""
        with self._writing() as current:
            documents = dict(current.documents)
            return self._publish(documents, chunking or current.chunking, set(documents))

    # Internals ------------------------------------------------------------------------------
    def _encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        parts: list[Vectors] = []
        for first in range(0, len(texts), self._encode_batch):
            batch = texts[first : first + self._encode_batch]
            with self._encode_lock:
                part = np.asarray(self._encoder.encode(batch), dtype=np.float32)
            if part.ndim != 2 or part.shape[0] != len(batch):
                msg = f"the encoder returned shape {part.shape} for {len(batch)} texts"
                raise ValueError(msg)
            parts.append(part)
        vectors = np.concatenate(parts)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    def _chunks(
        self, documents: Mapping[str, Document], chunking: ChunkingOptions, fresh: set[str]
    ) -> list[Chunk]:
        current = self._snapshot
        reusable = chunking == current.chunking
        previous: dict[str, list[Chunk]] = {}
        for chunk in current.chunks:
            previous.setdefault(chunk.doc_id, []).append(chunk)
        chunks: list[Chunk] = []
        for doc_id in sorted(documents):
            if reusable and doc_id not in fresh and doc_id in previous:
                chunks.extend(previous[doc_id])
            else:
                parsed = parse_document(documents[doc_id])
                chunks.extend(chunk_document(doc_id, parsed, chunking))
        return chunks

    def _vectors(self, keys: list[str], texts: list[str]) -> tuple[dict[str, Vectors], int]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Vectors] = {}
        for key in wanted:
            vector = self._cache.get(key)
            if vector is not None:
                found[key] = vector
        found.update(self._snapshot.vectors_for_keys([k for k in wanted if k not in found]))
        missing = [k for k in wanted if k not in found]
        if missing:
            text_of = dict(zip(keys, texts, strict=True))
            encoded = self._encode([text_of[key] for key in missing])
            found.update(zip(missing, encoded, strict=True))
        for key in wanted:
            self._cache.put(key, found[key])
        return found, len(missing)

    def _publish(
        self, documents: Mapping[str, Document], chunking: ChunkingOptions, fresh: set[str]
    ) -> IngestReport:
        started = time.perf_counter()
        chunks = self._chunks(documents, chunking, fresh)
        texts = [embedding_text(chunk) for chunk in chunks]
        keys = [embed_key(self._encoder_id, text) for text in texts]
        by_key, encoded = self._vectors(keys, texts)
        vectors: VectorIndex | None = None
        if chunks:
            matrix = np.stack([by_key[key] for key in keys])
            ids = np.array([vector_id(chunk.chunk_id) for chunk in chunks], dtype=np.int64)
            vectors = VectorIndex.build(matrix, ids, self._hnsw)
        built: list[IndexSnapshot] = []

        def write(folder: Path, name: str) -> None:
            snapshot = IndexSnapshot.assemble(
                name,
                encoder_id=self._encoder_id,
                chunking=chunking,
                documents=documents,
                chunks=chunks,
                embed_keys=keys,
                vectors=vectors,
            )
            snapshot.write(folder, self._hnsw)
            built.append(snapshot)

        version = self._folder.build_new_version(write)
        self._snapshot = built[0]
        report = IngestReport(
            version=version,
            documents=len(documents),
            chunks=len(chunks),
            encoded=encoded,
            reused=len(set(keys)) - encoded,
            seconds=round(time.perf_counter() - started, 3),
        )
        _log.info(
            "published index version %s: %d documents, %d chunks, %d embedded, %d reused",
            version,
            report.documents,
            report.chunks,
            report.encoded,
            report.reused,
        )
        return report
