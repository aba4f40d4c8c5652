"""What Enclave stores and for how long: the SQL database, the audit log, retention and the
history's placeholder vaults.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from core.settings.base import Section

__all__ = [
    "AuditSettings",
    "DatabaseSettings",
    "HistorySettings",
    "RetentionSettings",
]


class DatabaseSettings(Section):
    """The SQL store (SQLAlchemy async): SQLite file by default, PostgreSQL in production."""

    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy async URL, e.g. postgresql+asyncpg://user:pw@db/enclave; "
        "null: SQLite at <data_dir>/enclave.db. A secret: prefer url_file or the "
        "ENCLAVE_DATABASE__URL variable.",
    )
    url_file: Path | None = Field(
        default=None, description="File holding the URL (a mounted secret); wins over url."
    )
    pool_size: int = Field(default=5, ge=1, description="Connections kept open (PostgreSQL).")
    connect_timeout_s: float = Field(
        default=5.0, gt=0, description="How long to wait for a connection before failing."
    )
    migrate_on_start: bool = Field(
        default=True,
        description="`enclave serve` upgrades the schema before starting (embedded mode); in "
        "a cluster a migration Job runs `enclave db upgrade` before new code rolls out.",
    )


class AuditSettings(Section):
    """The tamper-evident audit log: its Ed25519 signing key and how it is read back."""

    signing_key_file: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM PKCS#8 or 32 raw bytes; a mounted secret in a "
        "cluster); null: <data_dir>/secrets/audit-signing-key.",
    )
    generate_signing_key: bool = Field(
        default=True,
        description="Create the key file (mode 600) on first use when it does not exist "
        "(embedded mode); false in a cluster, so that a missing secret stops start-up instead "
        "of each replica signing with a key of its own.",
    )
    trusted_public_keys: list[str] = Field(
        default_factory=list,
        description="Base64 raw Ed25519 public keys of earlier signing keys: records they "
        "signed still verify after a key rotation.",
    )
    lock_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="PostgreSQL: longest wait for the chain head lock before an append fails "
        "with 503 (SQLite waits for its busy timeout).",
    )
    verify_batch_size: int = Field(
        default=1000, ge=1, description="Records read per query while verifying the chain."
    )
    export_batch_size: int = Field(
        default=1000, ge=1, description="Records read per query while exporting."
    )
    checkpoint_interval_s: float | None = Field(
        default=300.0,
        gt=0,
        description="How often each API process signs the chain's head (seq, hash, time) "
        "and writes it to the checkpoint sinks (the log stream and checkpoint_file); one more "
        "on shutdown. Records deleted from the end after a checkpoint are reported by "
        "`verify` given that checkpoint. null: no checkpoints.",
    )
    checkpoint_file: Path | None = Field(
        default=None,
        description="File each checkpoint is appended to (one JSON line, fsynced), for the "
        "operator to ship to WORM storage; null: <data_dir>/audit/checkpoints.jsonl.",
    )

    def checkpoint_path(self, data_dir: Path) -> Path:
        """The checkpoint file: the configured one, else the default in the data dir."""
        if self.checkpoint_file is not None:
            return self.checkpoint_file
        return data_dir / "audit" / "checkpoints.jsonl"

    def signing_key_path(self, data_dir: Path) -> Path:
        """The signing key file: the configured one, else the default in the data dir."""
        if self.signing_key_file is not None:
            return self.signing_key_file
        return data_dir / "secrets" / "audit-signing-key"


class RetentionSettings(Section):
    """How long each class of data is kept; a scheduled job deletes what is older."""

    history_days: int | None = Field(
        default=365,
        ge=1,
        description="Conversations (content and metadata) untouched for this many days are "
        "deleted; null: kept until their user deletes them.",
    )
    check_interval_s: float = Field(
        default=3600.0, ge=10, description="Seconds between two runs of the retention job."
    )
    audit_days: int | None = Field(
        default=None,
        ge=1,
        description="Not enforced by the job: audit records are never deleted, because the "
        "chain must verify. Archive them with `enclave audit export` (a signed bundle) and "
        "keep the bundles for this long; null: keep the records forever.",
    )


class HistorySettings(Section):
    """The owner-only placeholder vaults of conversations (envelope encryption)."""

    vault_key_file: Path | None = Field(
        default=None,
        description="The deployment key that wraps every user's history data key: 32 random "
        "bytes, raw or base64 (a mounted Secret in a cluster, never in the database); null: "
        "<data_dir>/secrets/history-vault-key.",
    )
    generate_vault_key: bool = Field(
        default=True,
        description="Create the key file (mode 600) on first use when it does not exist "
        "(embedded mode); false in a cluster, so that a missing Secret stops start-up instead "
        "of each replica wrapping keys with one of its own.",
    )
    retired_vault_key_files: list[Path] = Field(
        default_factory=list,
        description="Earlier deployment keys, read only to unwrap data keys they wrapped; "
        "each such key is re-wrapped under vault_key_file when its user's next answer is "
        "recorded, and all at once by `enclave history rewrap`; remove a file once that "
        "reports nothing unreadable.",
    )

    def vault_key_path(self, data_dir: Path) -> Path:
        """The deployment key file: the configured one, else the default in the data dir."""
        if self.vault_key_file is not None:
            return self.vault_key_file
        return data_dir / "secrets" / "history-vault-key"
