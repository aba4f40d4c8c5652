"""Each user's history data key, wrapped by the deployment key (SQLAlchemy Core, on
``schema.metadata``).

A conversation's placeholder vault (``conversations.vault``) is encrypted under its user's
data key; the data key is stored here only wrapped (AES-GCM) by a deployment key that lives
outside the database (a file, a Kubernetes Secret). Deleting a user's row is
crypto-shredding: every vault of theirs, in this database and in its backups, can no longer
be decrypted once the deployment keys that wrapped this row are retired
(``api.stores.vault_keys``).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, LargeBinary, String, Table

from core.db.schema import metadata

__all__ = ["history_keys"]

history_keys = Table(
    "history_keys",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("user_id", String(128), primary_key=True, comment="pseudonymous user id"),
    Column("kek_id", String(16), nullable=False, comment="which deployment key wrapped it"),
    Column("wrapped_key", LargeBinary, nullable=False, comment="nonce + AES-GCM(data key)"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("wrapped_at", DateTime(timezone=True), nullable=False),
)
