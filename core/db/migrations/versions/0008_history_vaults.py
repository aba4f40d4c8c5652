"""Per-user history data keys (wrapped by the deployment key) and each conversation's
encrypted placeholder vault.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "history_keys",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False, comment="pseudonymous user id"),
        sa.Column(
            "kek_id", sa.String(16), nullable=False, comment="which deployment key wrapped it"
        ),
        sa.Column(
            "wrapped_key",
            sa.LargeBinary(),
            nullable=False,
            comment="nonce + AES-GCM(data key)",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wrapped_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "user_id", name="pk_history_keys"),
    )
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(
            sa.Column(
                "vault",
                sa.LargeBinary(),
                nullable=True,
                comment="placeholder -> value map, AES-GCM under its user's data key "
                "(history_keys)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("vault")
    op.drop_table("history_keys")
