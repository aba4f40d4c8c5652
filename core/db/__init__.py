"""The SQL store: one schema (SQLAlchemy Core tables), an async engine, Alembic migrations.

SQLite (a file in the data dir) by default, PostgreSQL in production; the same tables and
migrations serve both. ``core.db.schema`` (knowledge bases, API keys) and
``core.db.audit_schema`` (audit log, history) put every table on one ``MetaData``, so that
one Alembic history covers the whole database; the packages that own the data (``index``,
``api``) query them.
"""

from __future__ import annotations

from core.db.audit_schema import (
    GENESIS_HASH,
    audit_chain_head,
    audit_log,
    conversations,
    messages,
)
from core.db.engine import Database, database_url
from core.db.migrate import check_schema, current_revision, head_revision, upgrade
from core.db.schema import api_keys, kb_chunks, kb_documents, knowledge_bases, metadata

__all__ = [
    "GENESIS_HASH",
    "Database",
    "api_keys",
    "audit_chain_head",
    "audit_log",
    "check_schema",
    "conversations",
    "current_revision",
    "database_url",
    "head_revision",
    "kb_chunks",
    "kb_documents",
    "knowledge_bases",
    "messages",
    "metadata",
    "upgrade",
]
