"""The knowledge-base catalogue in the SQL store: bases, documents (with status) and chunks.

The vectors and each version's own metadata live in the version folders (``index.store``);
the catalogue is what the admin API lists and what other replicas look names up in. After
every published version :meth:`Catalogue.record_version` rewrites the base's chunk rows and
document statuses in one transaction; :meth:`Catalogue.reconcile` repairs a catalogue that
a crash left behind the index.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db import Database, kb_chunks, kb_documents, knowledge_bases
from core.errors import Conflict
from index.base import Chunk, Document, DocumentInfo, KnowledgeBaseInfo, PiiPolicy
from index.errors import UnknownDocument, UnknownKnowledgeBase

__all__ = ["BaseRecord", "Catalogue", "DocumentOutcome"]


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:  # SQLite hands back naive datetimes; we only store UTC
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class BaseRecord:
    """A knowledge base's catalogue row."""

    kb_id: str
    tenant: str
    name: str
    description: str
    pii_policy: PiiPolicy
    current_version: str | None
    created_by: str
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class DocumentOutcome:
    """What ingestion decided for one document (no PII values, only counts)."""

    document: Document
    size_bytes: int
    content_hash: str
    status: str  # "indexed" | "rejected"
    status_reason: str | None
    pii_found: Mapping[str, int]
    pii_action: PiiPolicy


def _base(row: Any) -> BaseRecord:
    return BaseRecord(
        kb_id=row.id,
        tenant=row.tenant,
        name=row.name,
        description=row.description,
        pii_policy=row.pii_policy,
        current_version=row.current_version,
        created_by=row.created_by,
        created_at=_iso(row.created_at),
        updated_at=_iso(row.updated_at),
    )


def _document(row: Any) -> DocumentInfo:
    return DocumentInfo(
        doc_id=row.doc_id,
        title=row.title,
        source=row.source,
        media_type=row.media_type,
        size_bytes=row.size_bytes,
        content_hash=row.content_hash,
        status=row.status,
        status_reason=row.status_reason,
        pii_found=dict(row.pii_found or {}),
        pii_action=row.pii_action,
        chunks=row.chunks,
        uploaded_by=row.uploaded_by,
        created_at=_iso(row.created_at),
        updated_at=_iso(row.updated_at),
    )


class Catalogue:
    """Queries over the knowledge-base tables; every lookup is scoped by tenant."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # Bases ------------------------------------------------------------------------------
    async def create_base(
        self, tenant: str, name: str, description: str, pii_policy: PiiPolicy, actor: str
    ) -> BaseRecord:
        """Insert a base; ``Conflict`` if the tenant already has one of that name."""
        now = _now()
        values = {
            "id": f"kb_{secrets.token_hex(8)}",
            "tenant": tenant,
            "name": name,
            "description": description,
            "pii_policy": pii_policy,
            "current_version": None,
            "created_by": actor,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self._db.transaction() as connection:
                await connection.execute(insert(knowledge_bases).values(**values))
        except IntegrityError as exc:
            msg = f"A knowledge base named {name!r} exists already; pick another name."
            raise Conflict(msg, extra={"knowledge_base": name}) from exc
        return await self.get_base(tenant, name)

    async def find_base(self, tenant: str, name: str) -> BaseRecord | None:
        """The base, or None."""
        async with self._db.reading() as connection:
            row = (
                await connection.execute(
                    select(knowledge_bases).where(
                        knowledge_bases.c.tenant == tenant, knowledge_bases.c.name == name
                    )
                )
            ).first()
        return None if row is None else _base(row)

    async def get_base(self, tenant: str, name: str) -> BaseRecord:
        """The base; ``UnknownKnowledgeBase`` (404) if the tenant has none of that name."""
        record = await self.find_base(tenant, name)
        if record is None:
            msg = f"No knowledge base named {name!r}. GET /v1/knowledge-bases lists yours."
            raise UnknownKnowledgeBase(msg, extra={"knowledge_base": name})
        return record

    async def list_bases(self, tenant: str) -> list[BaseRecord]:
        """The tenant's bases by name."""
        async with self._db.reading() as connection:
            rows = await connection.execute(
                select(knowledge_bases)
                .where(knowledge_bases.c.tenant == tenant)
                .order_by(knowledge_bases.c.name)
            )
            return [_base(row) for row in rows]

    async def all_bases(self) -> list[BaseRecord]:
        """Every base of every tenant (start-up reconciliation)."""
        async with self._db.reading() as connection:
            rows = await connection.execute(select(knowledge_bases))
            return [_base(row) for row in rows]

    async def delete_base(self, record: BaseRecord) -> None:
        """Remove the base and (cascading) its documents and chunks."""
        async with self._db.transaction() as connection:
            await connection.execute(delete(kb_chunks).where(kb_chunks.c.kb_id == record.kb_id))
            await connection.execute(
                delete(kb_documents).where(kb_documents.c.kb_id == record.kb_id)
            )
            await connection.execute(
                delete(knowledge_bases).where(knowledge_bases.c.id == record.kb_id)
            )

    async def info(self, record: BaseRecord) -> KnowledgeBaseInfo:
        """The base with its document and chunk counts."""
        async with self._db.reading() as connection:
            counts: dict[str, int] = dict(
                (
                    await connection.execute(
                        select(kb_documents.c.status, func.count())
                        .where(kb_documents.c.kb_id == record.kb_id)
                        .group_by(kb_documents.c.status)
                    )
                ).all()
            )
            chunks = (
                await connection.execute(
                    select(func.count()).where(kb_chunks.c.kb_id == record.kb_id)
                )
            ).scalar_one()
        return KnowledgeBaseInfo(
            name=record.name,
            tenant=record.tenant,
            description=record.description,
            pii_policy=record.pii_policy,
            version=record.current_version,
            documents=int(counts.get("indexed", 0)),
            rejected_documents=int(counts.get("rejected", 0)),
            chunks=int(chunks),
            created_by=record.created_by,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )

    # Documents and chunks ---------------------------------------------------------------
    async def list_documents(self, record: BaseRecord) -> list[DocumentInfo]:
        """The base's documents by id, with status."""
        async with self._db.reading() as connection:
            rows = await connection.execute(
                select(kb_documents)
                .where(kb_documents.c.kb_id == record.kb_id)
                .order_by(kb_documents.c.doc_id)
            )
            return [_document(row) for row in rows]

    async def get_document(self, record: BaseRecord, doc_id: str) -> DocumentInfo:
        """One document; ``UnknownDocument`` (404) if absent."""
        async with self._db.reading() as connection:
            row = (
                await connection.execute(
                    select(kb_documents).where(
                        kb_documents.c.kb_id == record.kb_id, kb_documents.c.doc_id == doc_id
                    )
                )
            ).first()
        if row is None:
            msg = f"No document {doc_id!r} in knowledge base {record.name!r}."
            raise UnknownDocument(msg, extra={"doc_id": doc_id})
        return _document(row)

    async def record_version(
        self,
        record: BaseRecord,
        version: str | None,
        chunks: Iterable[Chunk],
        outcomes: Iterable[DocumentOutcome] = (),
        *,
        removed: Iterable[str] = (),
        actor: str = "system",
    ) -> list[DocumentInfo]:
        """After a version was published: its chunk rows, the documents' rows, in one go."""
        now = _now()
        chunk_rows: list[dict[str, Any]] = []
        per_doc: dict[str, int] = {}
        for chunk in chunks:
            per_doc[chunk.doc_id] = per_doc.get(chunk.doc_id, 0) + 1
            chunk_rows.append(
                {
                    "kb_id": record.kb_id,
                    "chunk_id": chunk.chunk_id,
                    "doc_id": chunk.doc_id,
                    "version": version or "",
                    "ordinal": per_doc[chunk.doc_id] - 1,
                    "heading_path": list(chunk.heading_path),
                    "start_offset": chunk.start,
                    "end_offset": chunk.end,
                    "content_hash": chunk.content_hash,
                }
            )
        outcomes = list(outcomes)
        async with self._db.transaction() as connection:
            await connection.execute(delete(kb_chunks).where(kb_chunks.c.kb_id == record.kb_id))
            if chunk_rows:
                await connection.execute(insert(kb_chunks), chunk_rows)
            doomed = [*removed, *(o.document.doc_id for o in outcomes)]
            if doomed:
                await connection.execute(
                    delete(kb_documents).where(
                        kb_documents.c.kb_id == record.kb_id, kb_documents.c.doc_id.in_(doomed)
                    )
                )
            for outcome in outcomes:
                await connection.execute(
                    insert(kb_documents).values(
                        kb_id=record.kb_id,
                        doc_id=outcome.document.doc_id,
                        title=outcome.document.title[:300],
                        source=outcome.document.source[:300],
                        media_type=outcome.document.media_type,
                        size_bytes=outcome.size_bytes,
                        content_hash=outcome.content_hash,
                        status=outcome.status,
                        status_reason=outcome.status_reason,
                        pii_found=dict(outcome.pii_found),
                        pii_action=outcome.pii_action,
                        chunks=per_doc.get(outcome.document.doc_id, 0),
                        uploaded_by=actor,
                        created_at=now,
                        updated_at=now,
                    )
                )
            await self._refresh_chunk_counts(connection, record.kb_id, per_doc, now)
            await connection.execute(
                update(knowledge_bases)
                .where(knowledge_bases.c.id == record.kb_id)
                .values(current_version=version, updated_at=now)
            )
            rows = await connection.execute(
                select(kb_documents).where(
                    kb_documents.c.kb_id == record.kb_id,
                    kb_documents.c.doc_id.in_([o.document.doc_id for o in outcomes]),
                )
            )
            by_id = {row.doc_id: _document(row) for row in rows}
        return [by_id[o.document.doc_id] for o in outcomes]

    async def _refresh_chunk_counts(
        self, connection: AsyncConnection, kb_id: str, per_doc: Mapping[str, int], now: datetime
    ) -> None:
        rows = await connection.execute(
            select(kb_documents.c.doc_id, kb_documents.c.chunks).where(
                kb_documents.c.kb_id == kb_id, kb_documents.c.status == "indexed"
            )
        )
        for doc_id, stored in rows.all():
            if stored != per_doc.get(doc_id, 0):
                await connection.execute(
                    update(kb_documents)
                    .where(kb_documents.c.kb_id == kb_id, kb_documents.c.doc_id == doc_id)
                    .values(chunks=per_doc.get(doc_id, 0), updated_at=now)
                )

    async def remove_document_row(self, record: BaseRecord, doc_id: str) -> None:
        """Drop a document's row (a rejected document has no vectors to remove)."""
        async with self._db.transaction() as connection:
            await connection.execute(
                delete(kb_documents).where(
                    kb_documents.c.kb_id == record.kb_id, kb_documents.c.doc_id == doc_id
                )
            )

    async def reconcile(
        self,
        record: BaseRecord,
        version: str | None,
        chunks: Iterable[Chunk],
        documents: Mapping[str, Document],
        hashes: Mapping[str, str],
    ) -> bool:
        """Make the catalogue match the live index after a crash between the two; True if
        anything had to change. Documents the index holds but the catalogue lacks are
        recorded as indexed by ``system``; rows of indexed documents the index lacks go."""
        if record.current_version == version:
            return False
        listed = {d.doc_id: d for d in await self.list_documents(record)}
        stale = [
            doc_id
            for doc_id, info in listed.items()
            if info.status == "indexed" and doc_id not in documents
        ]
        missing = [
            DocumentOutcome(
                document=document,
                size_bytes=len(document.text.encode()),
                content_hash=hashes[doc_id],
                status="indexed",
                status_reason="recovered from the index after an interrupted change",
                pii_found={},
                pii_action=record.pii_policy,
            )
            for doc_id, document in documents.items()
            if doc_id not in listed or listed[doc_id].status != "indexed"
        ]
        await self.record_version(record, version, chunks, missing, removed=stale)
        return True
