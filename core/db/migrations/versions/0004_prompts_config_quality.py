"""Prompt versions and activations, runtime configuration versions and activations, quality
events (feedback and implicit signals), evaluation runs and user profiles.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _when(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "prompt_versions",
        sa.Column("id", sa.String(40), nullable=False, comment="pv_ + random hex"),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False, comment="'' = the tenant's own level"),
        sa.Column("name", sa.String(64), nullable=False, comment="which prompt, e.g. chat"),
        sa.Column(
            "number", sa.Integer(), nullable=False, comment="1, 2, 3, ... per scope and name"
        ),
        sa.Column("parts", sa.JSON(), nullable=False, comment="part name -> Jinja template"),
        sa.Column(
            "variables", sa.JSON(), nullable=False, comment="declared variables and their types"
        ),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        _when("created_at"),
        sa.Column(
            "last_check", sa.JSON(), nullable=True, comment="the last regression-suite result"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_prompt_versions"),
        sa.UniqueConstraint(
            "tenant",
            "client",
            "name",
            "number",
            name="uq_prompt_versions_tenant_client_name_number",
        ),
    )
    op.create_table(
        "prompt_activations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column(
            "version_id", sa.String(40), nullable=True, comment="null: inherit the level above"
        ),
        sa.Column(
            "action", sa.String(16), nullable=False, comment="activate | rollback | deactivate"
        ),
        sa.Column("activated_by", sa.String(128), nullable=False),
        _when("activated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_prompt_activations"),
    )
    op.create_index(
        "ix_prompt_activations_tenant_client_name_id",
        "prompt_activations",
        ["tenant", "client", "name", "id"],
    )
    op.create_table(
        "config_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False, comment="'*' = every tenant"),
        sa.Column("number", sa.Integer(), nullable=False, comment="1, 2, 3, ... per tenant"),
        sa.Column("document", sa.JSON(), nullable=False, comment="the validated runtime settings"),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_config_versions"),
        sa.UniqueConstraint("tenant", "number", name="uq_config_versions_tenant_number"),
    )
    op.create_table(
        "config_activations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column(
            "number",
            sa.Integer(),
            nullable=True,
            comment="null: no overrides for this tenant",
        ),
        sa.Column("action", sa.String(16), nullable=False, comment="activate | rollback"),
        sa.Column("activated_by", sa.String(128), nullable=False),
        _when("activated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_config_activations"),
    )
    op.create_index("ix_config_activations_tenant_id", "config_activations", ["tenant", "id"])
    op.create_table(
        "quality_events",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False, comment="pseudonymous user id"),
        sa.Column("request_id", sa.String(64), nullable=False, comment="the answer it is about"),
        sa.Column("conversation_id", sa.String(40), nullable=True),
        sa.Column(
            "kind",
            sa.String(24),
            nullable=False,
            comment="thumbs_up | thumbs_down | regenerate | copy | abandoned | rephrase",
        ),
        sa.Column("comment", sa.Text(), nullable=True, comment="PII-scrubbed (placeholders only)"),
        sa.Column("prompt_version", sa.String(80), nullable=True),
        sa.Column("config_version", sa.String(80), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_quality_events"),
    )
    op.create_index(
        "ix_quality_events_tenant_created_at", "quality_events", ["tenant", "created_at"]
    )
    op.create_index("ix_quality_events_request_id", "quality_events", ["request_id"])
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        _when("started_at"),
        _when("finished_at"),
        sa.Column("prompt_version", sa.String(80), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("config_version", sa.String(80), nullable=True),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column(
            "details",
            sa.JSON(),
            nullable=False,
            comment="per case: id, passed, failures (no text)",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_eval_runs"),
    )
    op.create_index("ix_eval_runs_dataset_started_at", "eval_runs", ["dataset", "started_at"])
    op.create_table(
        "user_profiles",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False, comment="pseudonymous user id"),
        sa.Column("display_name", sa.String(100), nullable=False, comment="chosen by the user"),
        sa.Column(
            "language", sa.String(16), nullable=False, comment="BCP 47 tag, e.g. en or de-CH"
        ),
        sa.Column("default_knowledge_base", sa.String(64), nullable=True),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("tenant", "user_id", name="pk_user_profiles"),
    )


def downgrade() -> None:
    op.drop_table("user_profiles")
    op.drop_index("ix_eval_runs_dataset_started_at", table_name="eval_runs")
    op.drop_table("eval_runs")
    op.drop_index("ix_quality_events_request_id", table_name="quality_events")
    op.drop_index("ix_quality_events_tenant_created_at", table_name="quality_events")
    op.drop_table("quality_events")
    op.drop_index("ix_config_activations_tenant_id", table_name="config_activations")
    op.drop_table("config_activations")
    op.drop_table("config_versions")
    op.drop_index("ix_prompt_activations_tenant_client_name_id", table_name="prompt_activations")
    op.drop_table("prompt_activations")
    op.drop_table("prompt_versions")
