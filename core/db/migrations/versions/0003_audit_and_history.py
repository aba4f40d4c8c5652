"""The audit log (hash-chained, signed records and the chain head) and the chat history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "seq",
            sa.BigInteger(),
            autoincrement=False,
            nullable=False,
            comment="1, 2, 3, ... without gaps",
        ),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False, comment="pseudonymous actor id"),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column(
            "event", sa.Text(), nullable=False, comment="canonical JSON (RFC 8785), verbatim"
        ),
        sa.Column("prev_hash", sa.String(64), nullable=False, comment="hash of record seq - 1"),
        sa.Column("hash", sa.String(64), nullable=False, comment="sha256 hex of the record"),
        sa.Column(
            "signature",
            sa.String(100),
            nullable=False,
            comment="Ed25519 over the hash, base64",
        ),
        sa.Column(
            "key_id",
            sa.String(16),
            nullable=False,
            comment="signing key: sha256(public key)[:16]",
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_tenant_seq", "audit_log", ["tenant", "seq"])
    op.create_index("ix_audit_log_event_type", "audit_log", ["event_type"])
    op.create_index("ix_audit_log_recorded_at", "audit_log", ["recorded_at"])
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False, comment="always 1"),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_chain_head_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_chain_head"),
    )
    # The head row exists from the start: writers lock it, and never race to create it.
    op.bulk_insert(
        head,
        [{"id": 1, "last_seq": 0, "last_hash": GENESIS_HASH, "updated_at": datetime.now(UTC)}],
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False, comment="pseudonymous user id"),
        sa.Column("title", sa.String(300), nullable=False, comment="placeholders only"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
    )
    op.create_index(
        "ix_conversations_tenant_user_id_updated_at",
        "conversations",
        ["tenant", "user_id", "updated_at"],
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("conversation_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False, comment="order within the conversation"),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False, comment="placeholders only, never raw PII"),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_messages_conversation_id_conversations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_id_seq"),
    )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_index("ix_conversations_tenant_user_id_updated_at", table_name="conversations")
    op.drop_table("conversations")
    op.drop_table("audit_chain_head")
    op.drop_index("ix_audit_log_recorded_at", table_name="audit_log")
    op.drop_index("ix_audit_log_event_type", table_name="audit_log")
    op.drop_index("ix_audit_log_tenant_seq", table_name="audit_log")
    op.drop_table("audit_log")
