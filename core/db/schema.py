"""Every table of Enclave's SQL store (SQLAlchemy Core), under one ``MetaData``.

Alembic's history (``core/db/migrations``) creates exactly these; a test compares the two
on SQLite and PostgreSQL. Tenant ids, names and ids are plain strings; times are UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

__all__ = ["api_keys", "kb_chunks", "kb_documents", "knowledge_bases", "metadata"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

knowledge_bases = Table(
    "knowledge_bases",
    metadata,
    Column("id", String(40), primary_key=True, comment="kb_ + random hex; names the folder"),
    Column("tenant", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("description", String(500), nullable=False),
    Column("pii_policy", String(8), nullable=False),
    Column("current_version", String(64), nullable=True, comment="live index version"),
    Column("created_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant", "name"),
)

kb_documents = Table(
    "kb_documents",
    metadata,
    Column(
        "kb_id",
        String(40),
        ForeignKey("knowledge_bases.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("doc_id", String(128), primary_key=True),
    Column("title", String(300), nullable=False),
    Column("source", String(300), nullable=False),
    Column("media_type", String(64), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False, comment="sha256 of the stored text"),
    Column("status", String(16), nullable=False, comment="indexed | rejected"),
    Column("status_reason", String(500), nullable=True),
    Column("pii_found", JSON, nullable=False, comment="PII values found, per type (counts)"),
    Column("pii_action", String(8), nullable=False, comment="keep | redact | reject"),
    Column("chunks", Integer, nullable=False),
    Column("uploaded_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

kb_chunks = Table(
    "kb_chunks",
    metadata,
    Column(
        "kb_id",
        String(40),
        ForeignKey("knowledge_bases.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("chunk_id", String(200), primary_key=True),
    Column("doc_id", String(128), nullable=False),
    Column("version", String(64), nullable=False, comment="index version the row describes"),
    Column("ordinal", Integer, nullable=False),
    Column("heading_path", JSON, nullable=False),
    Column("start_offset", Integer, nullable=False),
    Column("end_offset", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Index(None, "kb_id", "doc_id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True, comment="the public half of the key"),
    Column("hash", String(100), nullable=False, comment="hmac-sha256 / sha256 of the key"),
    Column("tenant", String(64), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("name", String(100), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index(None, "tenant"),
)
