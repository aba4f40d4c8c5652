"""``KnowledgeBaseService``: tenant knowledge bases — administration, ingestion, retrieval.

It composes the parts of this package: the SQL catalogue (``index.catalog``), one versioned
FAISS index per knowledge base (``index.knowledge_base``, in ``<root>/<kb id>/``), the
sentence encoder and a PII finder for ingestion. The retriever deployment hosts it; the CLI
runs it in-process. Blocking work (parsing, embedding, index builds, searches) runs in
worker threads so that the event loop keeps answering.

An upload is all or nothing: every file is parsed before anything is stored, and one that
cannot be read fails the whole upload with a 4xx naming it. Documents that hold PII are
kept, redacted (each value replaced by ``[TYPE]``) or rejected, by the base's policy;
rejected ones are recorded with the reason (counts per type, never the values).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import text

from core.db import Database
from core.errors import Conflict, InvalidRequest, PayloadTooLarge
from core.settings import RetrievalSettings, SeedKnowledgeBase
from index.base import (
    Document,
    DocumentInfo,
    IngestOutcome,
    KnowledgeBaseInfo,
    Passage,
    PiiPolicy,
    RetrievalResult,
    Source,
    SpanFinder,
    TextEncoder,
    UploadedFile,
)
from index.catalog import BaseRecord, Catalogue, DocumentOutcome
from index.errors import DocumentError, IndexUnavailable, UnknownDocument
from index.faiss_index import HNSWOptions
from index.knowledge_base import KnowledgeBase
from index.parsing import MEDIA_TYPES, document_from_bytes, media_type_of
from index.quotes import QuoteFinder

__all__ = ["KnowledgeBaseService", "redact"]

_log = logging.getLogger("enclave.index")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_REFRESH_EVERY_S = 1.0


def redact(text: str, spans: Sequence[tuple[int, int, str]]) -> str:
    """``text`` with each PII span replaced by ``[TYPE]`` (spans sorted, not overlapping)."""
    parts: list[str] = []
    cursor = 0
    for start, end, entity_type in sorted(spans):
        if start < cursor:
            continue
        parts.append(text[cursor:start])
        parts.append(f"[{entity_type}]")
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def _doc_id_of(filename: str) -> str:
    stem = Path(filename).stem.lower()
    slug = re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._")
    return slug[:128] or "document"


def _summary(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


class _SerialEncoder:
    """One encoder shared by every knowledge base; one call at a time (not thread-safe)."""

    def __init__(self, inner: TextEncoder) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            return self._inner.encode(texts)


class KnowledgeBaseService:
    """Implements ``index.base.KnowledgeService`` over the catalogue and the FAISS indexes."""

    def __init__(
        self,
        db: Database,
        encoder: TextEncoder,
        *,
        encoder_id: str,
        root: Path,
        settings: RetrievalSettings,
        finder: SpanFinder | None,
    ) -> None:
        self._db = db
        self._catalogue = Catalogue(db)
        self._encoder = _SerialEncoder(encoder)
        self._encoder_id = encoder_id
        self._quotes = QuoteFinder(self._encoder)
        self._root = root
        self._settings = settings
        self._finder = finder
        self._hnsw = HNSWOptions(ef_search=settings.ef_search)
        self._open_bases: dict[str, KnowledgeBase] = {}
        self._refreshed: dict[str, float] = {}
        self._records: dict[tuple[str, str], tuple[float, BaseRecord]] = {}
        self._opening = asyncio.Lock()

    # Administration ---------------------------------------------------------------------
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
        if not _NAME.match(name):
            msg = (
                f"Knowledge-base name {name!r} is not valid: use 1-64 lower-case letters, "
                "digits, '-' or '_', starting with a letter or digit."
            )
            raise InvalidRequest(msg, extra={"knowledge_base": name})
        if len(description) > 500:
            msg = f"The description is {len(description)} characters; at most 500 allowed."
            raise InvalidRequest(msg)
        policy = pii_policy or self._settings.pii_policy_of(name)
        record = await self._catalogue.create_base(tenant, name, description, policy, actor)
        _log.info("knowledge base created", extra={"kb_id": record.kb_id, "pii_policy": policy})
        return await self._catalogue.info(record)

    async def list_bases(self, tenant: str) -> list[KnowledgeBaseInfo]:
        """The tenant's knowledge bases, by name."""
        records = await self._catalogue.list_bases(tenant)
        return [await self._catalogue.info(record) for record in records]

    async def get_base(self, tenant: str, name: str) -> KnowledgeBaseInfo:
        """One knowledge base (``UnknownKnowledgeBase`` if absent)."""
        return await self._catalogue.info(await self._catalogue.get_base(tenant, name))

    async def delete_base(self, tenant: str, name: str) -> None:
        """Delete a knowledge base, its documents, chunks and index files."""
        record = await self._catalogue.get_base(tenant, name)
        await self._catalogue.delete_base(record)
        self._open_bases.pop(record.kb_id, None)
        self._records.pop((tenant, name), None)
        await asyncio.to_thread(shutil.rmtree, self._root / record.kb_id, True)
        _log.info("knowledge base deleted", extra={"kb_id": record.kb_id})

    async def list_documents(self, tenant: str, name: str) -> list[DocumentInfo]:
        """The documents of a knowledge base with their status."""
        return await self._catalogue.list_documents(await self._catalogue.get_base(tenant, name))

    async def document_texts(self, tenant: str, name: str) -> list[str]:
        """The indexed text of every document of a knowledge base (as stored: redacted where
        the base's policy redacts), e.g. to derive the places it names."""
        record = await self._catalogue.get_base(tenant, name)
        kb = await self._open(record)
        await self._maybe_refresh(record.kb_id, kb)
        return [document.text for document in kb.snapshot.documents.values()]

    # Ingestion --------------------------------------------------------------------------
    async def upload(
        self, tenant: str, name: str, files: list[UploadedFile], *, actor: str = "system"
    ) -> IngestOutcome:
        """Parse, PII-check, chunk, embed and index files, all or nothing."""
        started = time.perf_counter()
        record = await self._catalogue.get_base(tenant, name)
        documents = await asyncio.to_thread(self._parse_all, files)
        outcomes, accepted = await self._apply_pii_policy(record, documents, files)
        kb = await self._open(record)
        encoded = reused = 0
        if accepted:
            report = await asyncio.to_thread(kb.add_documents, accepted)
            encoded, reused = report.encoded, report.reused
        snapshot = kb.snapshot
        version = self._live_version(kb)
        infos = await self._catalogue.record_version(
            record, version, snapshot.chunks, outcomes, actor=actor
        )
        self._forget(record)
        indexed = sum(info.chunks for info in infos)
        _log.info(
            "documents ingested",
            extra={
                "kb_id": record.kb_id,
                "version": version,
                "indexed": len(accepted),
                "rejected": len(outcomes) - len(accepted),
                "chunks": indexed,
                "embedded": encoded,
            },
        )
        return IngestOutcome(
            version=version,
            documents=tuple(infos),
            chunks=indexed,
            embedded=encoded,
            reused=reused,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _parse_all(self, files: list[UploadedFile]) -> list[Document]:
        limits = self._settings
        if not files:
            raise InvalidRequest("The upload holds no files; send at least one document.")
        if len(files) > limits.max_files_per_upload:
            msg = f"{len(files)} files sent; at most {limits.max_files_per_upload} per upload."
            raise InvalidRequest(msg)
        total = sum(len(f.data) for f in files)
        if total > limits.max_upload_bytes:
            msg = (
                f"The upload is {total} bytes; at most {limits.max_upload_bytes} bytes are "
                "accepted. Split it into several uploads."
            )
            raise PayloadTooLarge(msg)
        documents: list[Document] = []
        seen: dict[str, str] = {}
        for upload in files:
            doc_id = _doc_id_of(upload.filename)
            if doc_id in seen:
                msg = (
                    f"{upload.filename} and {seen[doc_id]} would both become document "
                    f"{doc_id!r}; rename one of them."
                )
                raise DocumentError(msg, source=upload.filename)
            seen[doc_id] = upload.filename
            if not upload.data:
                msg = f"{upload.filename}: the file is empty."
                raise DocumentError(msg, source=upload.filename)
            media_type = media_type_of(Path(upload.filename))
            documents.append(
                document_from_bytes(
                    upload.data, doc_id=doc_id, media_type=media_type, source=upload.filename
                )
            )
        return documents

    async def _apply_pii_policy(
        self, record: BaseRecord, documents: list[Document], files: list[UploadedFile]
    ) -> tuple[list[DocumentOutcome], list[Document]]:
        if self._finder is not None:
            found = await self._finder.find([d.text for d in documents])
        else:
            found = [[] for _ in documents]
        outcomes: list[DocumentOutcome] = []
        accepted: list[Document] = []
        policy = record.pii_policy
        for document, upload, spans in zip(documents, files, found, strict=True):
            counts = Counter(kind for _, _, kind in spans)
            status, reason = "indexed", None
            stored = document
            if spans and policy == "reject":
                status = "rejected"
                reason = (
                    f"contains personal data ({_summary(counts)}); this knowledge base "
                    "rejects documents with personal data. Remove it and upload again."
                )
            elif spans and policy == "redact":
                stored = replace(document, text=redact(document.text, spans))
            if status == "indexed":
                accepted.append(stored)
            outcomes.append(
                DocumentOutcome(
                    document=stored,
                    size_bytes=len(upload.data),
                    content_hash=hashlib.sha256(stored.text.encode()).hexdigest(),
                    status=status,
                    status_reason=reason,
                    pii_found=dict(counts),
                    pii_action=policy,
                )
            )
        return outcomes, accepted

    async def delete_document(self, tenant: str, name: str, doc_id: str) -> IngestOutcome:
        """Remove a document and its vectors."""
        started = time.perf_counter()
        record = await self._catalogue.get_base(tenant, name)
        info = await self._catalogue.get_document(record, doc_id)
        kb = await self._open(record)
        if info.status == "rejected" or doc_id not in kb.snapshot.documents:
            await self._catalogue.remove_document_row(record, doc_id)
            return IngestOutcome(record.current_version, (), 0, 0, 0, 0.0)
        try:
            report = await asyncio.to_thread(kb.delete_document, doc_id)
        except UnknownDocument:
            await self._catalogue.remove_document_row(record, doc_id)
            raise
        snapshot = kb.snapshot
        await self._catalogue.record_version(
            record, self._live_version(kb), snapshot.chunks, removed=[doc_id]
        )
        self._forget(record)
        return IngestOutcome(
            version=self._live_version(kb),
            documents=(),
            chunks=len(snapshot.chunks),
            embedded=report.encoded,
            reused=report.reused,
            seconds=round(time.perf_counter() - started, 3),
        )

    async def reindex(self, tenant: str, name: str) -> IngestOutcome:
        """Re-chunk and re-index every document into a new version, swapped in atomically."""
        record = await self._catalogue.get_base(tenant, name)
        kb = await self._open(record)
        report = await asyncio.to_thread(kb.reindex)
        snapshot = kb.snapshot
        await self._catalogue.record_version(record, report.version, snapshot.chunks)
        self._forget(record)
        return IngestOutcome(
            version=report.version,
            documents=(),
            chunks=report.chunks,
            embedded=report.encoded,
            reused=report.reused,
            seconds=report.seconds,
        )

    async def seed(self, seeds: Sequence[SeedKnowledgeBase]) -> list[str]:
        """Create and ingest each seed knowledge base that does not exist; return their names."""
        created: list[str] = []
        for seed in seeds:
            if await self._catalogue.find_base(seed.tenant, seed.name) is not None:
                continue
            paths = sorted(
                p for p in seed.path.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_TYPES
            )
            files = [UploadedFile(p.name, p.read_bytes()) for p in paths]
            try:
                await self.create_base(
                    seed.tenant, seed.name, description=seed.description, actor="seed"
                )
            except Conflict:
                continue  # another replica created it first and ingests it
            outcome = await self.upload(seed.tenant, seed.name, files, actor="seed")
            _log.info(
                "seed knowledge base ingested",
                extra={"documents": len(outcome.documents), "chunks": outcome.chunks},
            )
            created.append(seed.name)
        return created

    # Retrieval --------------------------------------------------------------------------
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
        """The best ``k`` chunks scoring at least ``min_score``. ``embedding``: the query's
        float32 embedding made by ``embedding_model`` (``name@version``); used instead of
        encoding the query again when that is this service's encoder."""
        started = time.perf_counter()
        record = await self._record(tenant, name)
        kb = await self._open(record)
        await self._maybe_refresh(record.kb_id, kb)
        vector = None
        if embedding and embedding_model == self._encoder_id:
            vector = np.frombuffer(embedding, dtype=np.float32)
        result = await asyncio.to_thread(kb.query, query, k, min_score, vector=vector)
        # The best source (the passage whose closest sentence, with its own score, answers
        # best) goes first and carries the sentence(s) that best answer the question, so a
        # reader sees the handbook's own words beside the generated answer.
        hits = list(result.hits)
        quote = ""
        if hits:
            best, found = await asyncio.to_thread(
                self._quotes.best_source,
                query,
                [(hit.chunk.text, hit.score) for hit in hits],
                question_vector=vector,
            )
            hits.insert(0, hits.pop(best))
            quote = found.text
        sources = tuple(
            Source(
                knowledge_base=name,
                doc_id=hit.chunk.doc_id,
                title=hit.chunk.title,
                chunk_id=hit.chunk.chunk_id,
                score=round(hit.score, 4),
                heading_path=hit.chunk.heading_path,
                text=hit.chunk.text,
                quote=quote if rank == 0 else "",
            )
            for rank, hit in enumerate(hits)
        )
        return RetrievalResult(
            version=None if result.version == "empty" else result.version,
            sources=sources,
            search_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    async def passage(self, tenant: str, name: str, chunk_id: str) -> Passage:
        """One chunk's text and place in its document."""
        record = await self._record(tenant, name)
        kb = await self._open(record)
        await self._maybe_refresh(record.kb_id, kb)
        for chunk in kb.snapshot.chunks:
            if chunk.chunk_id == chunk_id:
                return Passage(
                    knowledge_base=name,
                    doc_id=chunk.doc_id,
                    title=chunk.title,
                    chunk_id=chunk.chunk_id,
                    heading_path=chunk.heading_path,
                    start=chunk.start,
                    end=chunk.end,
                    text=chunk.text,
                )
        msg = f"No passage {chunk_id!r} in knowledge base {name!r} (it may have been re-indexed)."
        raise UnknownDocument(msg, extra={"chunk_id": chunk_id})

    async def check_health(self) -> None:
        """Raise unless the database answers."""
        async with self._db.reading() as connection:
            await connection.execute(text("SELECT 1"))

    # Internals --------------------------------------------------------------------------
    async def _record(self, tenant: str, name: str) -> BaseRecord:
        # Names are looked up at most every few seconds per replica, not on every query.
        cached = self._records.get((tenant, name))
        now = time.monotonic()
        if cached is not None and now - cached[0] < 5.0:
            return cached[1]
        record = await self._catalogue.get_base(tenant, name)
        self._records[(tenant, name)] = (now, record)
        return record

    def _forget(self, record: BaseRecord) -> None:
        self._records.pop((record.tenant, record.name), None)

    @staticmethod
    def _live_version(kb: KnowledgeBase) -> str | None:
        return None if kb.version == "empty" else kb.version

    async def _open(self, record: BaseRecord) -> KnowledgeBase:
        kb = self._open_bases.get(record.kb_id)
        if kb is not None:
            return kb
        async with self._opening:
            kb = self._open_bases.get(record.kb_id)
            if kb is None:
                kb = await asyncio.to_thread(
                    KnowledgeBase,
                    self._root / record.kb_id,
                    self._encoder,
                    encoder_id=self._encoder_id,
                    hnsw=self._hnsw,
                )
                snapshot = kb.snapshot
                hashes = {
                    doc_id: hashlib.sha256(doc.text.encode()).hexdigest()
                    for doc_id, doc in snapshot.documents.items()
                }
                if await self._catalogue.reconcile(
                    record, self._live_version(kb), snapshot.chunks, snapshot.documents, hashes
                ):
                    _log.warning("catalogue repaired from the index", extra={"kb_id": record.kb_id})
                self._open_bases[record.kb_id] = kb
                self._refreshed[record.kb_id] = time.monotonic()
        return kb

    async def _maybe_refresh(self, kb_id: str, kb: KnowledgeBase) -> None:
        now = time.monotonic()
        if now - self._refreshed.get(kb_id, 0.0) < _REFRESH_EVERY_S:
            return
        self._refreshed[kb_id] = now
        try:
            await asyncio.to_thread(kb.refresh)
        except IndexUnavailable as exc:
            # A newer version that cannot be read (a broken pointer, a half-copied volume)
            # must not take search down: keep answering from the version already loaded.
            _log.warning(
                "index reload failed; serving the loaded version",
                extra={"kb_id": kb_id, "version": kb.version, "error": exc.detail},
            )
