"""The SQL store: one schema (SQLAlchemy Core tables), an async engine, Alembic migrations.

SQLite (a file in the data dir) by default, PostgreSQL in production; the same tables and
migrations serve both. ``core.db.schema`` (knowledge bases, API keys),
``core.db.audit_schema`` (audit log, history) and ``core.db.quality_schema`` (prompt and
configuration versions, quality signals, evaluation runs, profiles), ``core.db.vault_schema``
(users' wrapped history keys) put every table on one
``MetaData``, so that one Alembic history covers the whole database; the packages that own
the data (``index``, ``api``) query them.
"""

from __future__ import annotations

from core.db.audit_schema import (
    GENESIS_HASH,
    audit_chain_head,
    audit_log,
    conversations,
    messages,
)
from core.db.canary_schema import canary_runs
from core.db.engine import Database, database_url
from core.db.migrate import check_schema, current_revision, head_revision, upgrade
from core.db.quality_schema import (
    config_activations,
    config_versions,
    eval_runs,
    prompt_activations,
    prompt_versions,
    quality_events,
    user_profiles,
)
from core.db.schema import api_keys, kb_chunks, kb_documents, knowledge_bases, metadata
from core.db.times import as_utc
from core.db.vault_schema import history_keys

__all__ = [
    "GENESIS_HASH",
    "Database",
    "api_keys",
    "as_utc",
    "audit_chain_head",
    "audit_log",
    "canary_runs",
    "check_schema",
    "config_activations",
    "config_versions",
    "conversations",
    "current_revision",
    "database_url",
    "eval_runs",
    "head_revision",
    "history_keys",
    "kb_chunks",
    "kb_documents",
    "knowledge_bases",
    "messages",
    "metadata",
    "prompt_activations",
    "prompt_versions",
    "quality_events",
    "upgrade",
    "user_profiles",
]
