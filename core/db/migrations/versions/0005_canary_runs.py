"""The viability canary's recorded runs (every API replica exports the newest as metrics).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "canary_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False, comment="every step passed"),
        sa.Column(
            "failed_step", sa.String(32), nullable=True, comment="the first step that failed"
        ),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column(
            "details", sa.JSON(), nullable=False, comment="the report, steps included; no PII"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_canary_runs"),
    )
    op.create_index("ix_canary_runs_ok_id", "canary_runs", ["ok", "id"])


def downgrade() -> None:
    op.drop_index("ix_canary_runs_ok_id", table_name="canary_runs")
    op.drop_table("canary_runs")
