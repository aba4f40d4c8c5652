"""The tamper-evident audit log: canonical JSON, Ed25519 signing, the chain, exports.

``AuditLog.append`` writes a record inside the caller's transaction; ``AuditLog.verify``
recomputes the chain; ``export`` streams JSONL/CSV and writes a signed bundle that
``verify_bundle`` checks offline. ``core.audit.chain``'s docstring says how writers are
serialised and how erasure works without editing the chain.
"""

from __future__ import annotations

from core.audit.bundle import (
    BUNDLE_FORMAT,
    BundleProblem,
    BundleReport,
    BundleSummary,
    verify_bundle,
    write_bundle,
)
from core.audit.canonical import CanonicalJSONError, canonical_json, canonical_json_bytes
from core.audit.chain import AuditEntry, AuditLog, VerifyReport
from core.audit.checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    CheckpointError,
    CheckpointFile,
    CheckpointLog,
    CheckpointSink,
    latest_checkpoint,
    take_checkpoint,
)
from core.audit.errors import AuditUnavailable
from core.audit.export import CSV_COLUMNS, ExportFilter, csv_lines, iter_records, jsonl_lines
from core.audit.reading import STORE_ERRORS
from core.audit.records import AuditRecord, Problem, ProblemKind, format_time, record_hash
from core.audit.signing import AuditSigner, AuditVerifier, key_id_of

__all__ = [
    "BUNDLE_FORMAT",
    "CHECKPOINT_FORMAT",
    "CSV_COLUMNS",
    "STORE_ERRORS",
    "AuditEntry",
    "AuditLog",
    "AuditRecord",
    "AuditSigner",
    "AuditUnavailable",
    "AuditVerifier",
    "BundleProblem",
    "BundleReport",
    "BundleSummary",
    "CanonicalJSONError",
    "Checkpoint",
    "CheckpointError",
    "CheckpointFile",
    "CheckpointLog",
    "CheckpointSink",
    "ExportFilter",
    "Problem",
    "ProblemKind",
    "VerifyReport",
    "canonical_json",
    "canonical_json_bytes",
    "csv_lines",
    "format_time",
    "iter_records",
    "jsonl_lines",
    "key_id_of",
    "latest_checkpoint",
    "record_hash",
    "take_checkpoint",
    "verify_bundle",
    "write_bundle",
]
