"""Tables of the audit log and of the chat history (SQLAlchemy Core, on ``schema.metadata``).

The audit log is append-only: ``audit_log`` holds the hash-chained, signed records and
``audit_chain_head`` the one row (``id = 1``) naming the last record, which every writer
locks before it appends, so the chain stays linear and gap-free. The chat history
(``conversations`` and ``messages``) is written in the same transaction as the exchange's
audit record. Both hold pseudonymous ids and placeholders only, never raw PII.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from core.db.schema import metadata

__all__ = ["GENESIS_HASH", "audit_chain_head", "audit_log", "conversations", "messages"]

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of record 1 and the head's hash before any record exists."""

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "seq",
        BigInteger,
        primary_key=True,
        autoincrement=False,
        comment="1, 2, 3, ... without gaps",
    ),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("actor", String(128), nullable=False, comment="pseudonymous actor id"),
    Column("event_type", String(64), nullable=False),
    Column("event", Text, nullable=False, comment="canonical JSON (RFC 8785), verbatim"),
    Column("prev_hash", String(64), nullable=False, comment="hash of record seq - 1"),
    Column("hash", String(64), nullable=False, comment="sha256 hex of the record"),
    Column("signature", String(100), nullable=False, comment="Ed25519 over the hash, base64"),
    Column("key_id", String(16), nullable=False, comment="signing key: sha256(public key)[:16]"),
    Index(None, "tenant", "seq"),
    Index(None, "event_type"),
    Index(None, "recorded_at"),
)

audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False, comment="always 1"),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("user_id", String(128), nullable=False, comment="pseudonymous user id"),
    Column("title", String(300), nullable=False, comment="placeholders only"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
    Column(
        "vault",
        LargeBinary,
        nullable=True,
        comment="placeholder -> value map, AES-GCM under its user's data key (history_keys)",
    ),
    Index(None, "tenant", "user_id", "updated_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(40), primary_key=True),
    Column(
        "conversation_id",
        String(40),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", Integer, nullable=False, comment="order within the conversation"),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False, comment="placeholders only, never raw PII"),
    Column("request_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("lineage", JSON, nullable=True),
    UniqueConstraint("conversation_id", "seq"),
)
