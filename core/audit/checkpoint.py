"""Signed head checkpoints: the chain's end, anchored where the database cannot rewrite it.

A hash chain proves that no record *inside* it changed, but not that none was cut off the
end: whoever can delete the newest rows can also rewind the head row, and what is left still
verifies. A checkpoint is a small signed statement, "at time T the chain's head was seq N
with hash H", written at an interval and on shutdown to sinks outside the database (a file
the operator ships to WORM storage, the log stream). Verifying the chain or a bundle
against the latest checkpoint one holds then reports a truncated tail: the chain must still
hold record N, with hash H. One line of JSON each::

    {"format": "enclave-audit-checkpoint/1", "seq": N, "head_hash": H, "at": T,
     "key_id": …, "signature": base64 Ed25519 over the canonical JSON of the rest}
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select

from core.audit.canonical import canonical_json, canonical_json_bytes
from core.audit.records import Problem, format_time
from core.audit.signing import AuditSigner, AuditVerifier
from core.db import Database, audit_chain_head, audit_log

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointError",
    "CheckpointFile",
    "CheckpointLog",
    "CheckpointSink",
    "compare_chain",
    "compare_head",
    "latest_checkpoint",
    "take_checkpoint",
]

CHECKPOINT_FORMAT = "enclave-audit-checkpoint/1"
_log = logging.getLogger("enclave.audit.checkpoint")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (not JSON, fields missing); the message says which."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain's head at one moment, signed by the audit key."""

    seq: int
    head_hash: str
    at: str
    key_id: str
    signature: str

    def _signed(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "seq": self.seq,
            "head_hash": self.head_hash,
            "at": self.at,
            "key_id": self.key_id,
        }

    def as_dict(self) -> dict[str, Any]:
        """The checkpoint as written to its sinks."""
        return {**self._signed(), "signature": self.signature}

    def line(self) -> str:
        """One line of canonical JSON (no newline)."""
        return canonical_json(self.as_dict())

    def signature_ok(self, verifier: AuditVerifier) -> bool:
        """Whether a key the verifier trusts signed exactly this checkpoint."""
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        return verifier.verify(self.key_id, signature, canonical_json_bytes(self._signed()))

    @classmethod
    def sign(cls, seq: int, head_hash: str, at: datetime, signer: AuditSigner) -> Checkpoint:
        """A checkpoint of ``seq``/``head_hash`` at ``at``, signed by ``signer``."""
        unsigned = cls(seq, head_hash, format_time(at), signer.key_id, "")
        signature = signer.sign(canonical_json_bytes(unsigned._signed()))
        return cls(seq, head_hash, unsigned.at, signer.key_id, base64.b64encode(signature).decode())

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """A checkpoint from its JSON line; raises ``CheckpointError`` naming what is wrong."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"the checkpoint is not JSON ({exc.msg})"
            raise CheckpointError(msg) from exc
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            msg = f"not a {CHECKPOINT_FORMAT} checkpoint"
            raise CheckpointError(msg)
        kinds = {"seq": int, "head_hash": str, "at": str, "key_id": str, "signature": str}
        for name, kind in kinds.items():
            if not isinstance(data.get(name), kind):
                msg = f"the checkpoint's field {name!r} is missing or mistyped"
                raise CheckpointError(msg)
        return cls(data["seq"], data["head_hash"], data["at"], data["key_id"], data["signature"])


def latest_checkpoint(path: Path) -> Checkpoint:
    """The last checkpoint in a file of checkpoint lines (a sink's file, or one shipped back)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        msg = f"{path} holds no checkpoint"
        raise CheckpointError(msg)
    return Checkpoint.parse(lines[-1])


async def take_checkpoint(db: Database, signer: AuditSigner) -> Checkpoint:
    """Sign the chain's current head."""
    head = audit_chain_head.c
    async with db.reading() as connection:
        row = (
            await connection.execute(select(head.last_seq, head.last_hash).where(head.id == 1))
        ).one()
    return Checkpoint.sign(int(row[0]), str(row[1]), datetime.now(UTC), signer)


def compare_head(
    checkpoint: Checkpoint, verifier: AuditVerifier, last_seq: int | None, hash_at: str | None
) -> Problem | None:
    """Whether a chain ending at ``last_seq``, holding ``hash_at`` at the checkpoint's seq,
    still holds what the checkpoint saw; the problem names a cut-off tail."""
    if not checkpoint.signature_ok(verifier):
        detail = f"the checkpoint of seq {checkpoint.seq} is not signed by a trusted audit key"
        return Problem(None, "bad_checkpoint", detail)
    if checkpoint.seq == 0:
        return None
    end = last_seq or 0
    if end < checkpoint.seq:
        first_gone = end + 1
        gone = (
            f"seq {first_gone} was"
            if first_gone == checkpoint.seq
            else f"seq {first_gone}–{checkpoint.seq} were"
        )
        detail = (
            f"the checkpoint signed at {checkpoint.at} saw the chain's head at seq "
            f"{checkpoint.seq}, but the records end at seq {end}: {gone} removed"
        )
        return Problem(first_gone, "truncated", detail)
    if hash_at != checkpoint.head_hash:
        detail = (
            f"record seq {checkpoint.seq} is not the one the checkpoint signed at "
            f"{checkpoint.at} saw (its hash differs): the chain was rewritten after it"
        )
        return Problem(checkpoint.seq, "checkpoint_mismatch", detail)
    return None


async def compare_chain(
    db: Database, checkpoint: Checkpoint, verifier: AuditVerifier
) -> Problem | None:
    """Compare the stored chain with a checkpoint (see :func:`compare_head`)."""
    async with db.reading() as connection:
        last = (await connection.execute(select(func.max(audit_log.c.seq)))).scalar_one_or_none()
        hash_at = (
            await connection.execute(
                select(audit_log.c.hash).where(audit_log.c.seq == checkpoint.seq)
            )
        ).scalar_one_or_none()
    return compare_head(checkpoint, verifier, last, hash_at)


class CheckpointSink(Protocol):
    """Somewhere a checkpoint is written that the database cannot rewrite."""

    def write(self, checkpoint: Checkpoint) -> None:
        """Record one checkpoint; raise ``OSError`` if it could not be."""


class CheckpointFile:
    """Appends each checkpoint as a line and syncs it: the file to ship to WORM storage."""

    def __init__(self, path: Path) -> None:
        """Append to ``path`` (its folder is created)."""
        self.path = path

    def write(self, checkpoint: Checkpoint) -> None:
        """Append one line and fsync, so a crash right after loses nothing written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(checkpoint.line() + "\n")
            handle.flush()
            os.fsync(handle.fileno())


class CheckpointLog:
    """Writes each checkpoint to the log stream (collected off the box by the log pipeline)."""

    def write(self, checkpoint: Checkpoint) -> None:
        """One structured log line carrying the whole signed checkpoint."""
        _log.info("audit checkpoint", extra={"checkpoint": checkpoint.as_dict()})
