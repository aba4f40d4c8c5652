"""Knowledge bases, their documents and the chunk catalogue.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "knowledge_bases",
        sa.Column(
            "id", sa.String(40), nullable=False, comment="kb_ + random hex; names the folder"
        ),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("pii_policy", sa.String(8), nullable=False),
        sa.Column("current_version", sa.String(64), nullable=True, comment="live index version"),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_knowledge_bases"),
        sa.UniqueConstraint("tenant", "name", name="uq_knowledge_bases_tenant_name"),
    )
    op.create_table(
        "kb_documents",
        sa.Column("kb_id", sa.String(40), nullable=False),
        sa.Column("doc_id", sa.String(128), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column(
            "content_hash", sa.String(64), nullable=False, comment="sha256 of the stored text"
        ),
        sa.Column("status", sa.String(16), nullable=False, comment="indexed | rejected"),
        sa.Column("status_reason", sa.String(500), nullable=True),
        sa.Column(
            "pii_found", sa.JSON(), nullable=False, comment="PII values found, per type (counts)"
        ),
        sa.Column("pii_action", sa.String(8), nullable=False, comment="keep | redact | reject"),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("uploaded_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["kb_id"],
            ["knowledge_bases.id"],
            name="fk_kb_documents_kb_id_knowledge_bases",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("kb_id", "doc_id", name="pk_kb_documents"),
    )
    op.create_table(
        "kb_chunks",
        sa.Column("kb_id", sa.String(40), nullable=False),
        sa.Column("chunk_id", sa.String(200), nullable=False),
        sa.Column("doc_id", sa.String(128), nullable=False),
        sa.Column(
            "version", sa.String(64), nullable=False, comment="index version the row describes"
        ),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("heading_path", sa.JSON(), nullable=False),
        sa.Column("start_offset", sa.Integer(), nullable=False),
        sa.Column("end_offset", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["kb_id"],
            ["knowledge_bases.id"],
            name="fk_kb_chunks_kb_id_knowledge_bases",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("kb_id", "chunk_id", name="pk_kb_chunks"),
    )
    op.create_index("ix_kb_chunks_kb_id_doc_id", "kb_chunks", ["kb_id", "doc_id"])


def downgrade() -> None:
    op.drop_index("ix_kb_chunks_kb_id_doc_id", table_name="kb_chunks")
    op.drop_table("kb_chunks")
    op.drop_table("kb_documents")
    op.drop_table("knowledge_bases")
