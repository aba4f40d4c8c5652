"""One audit record: its fields, its hash, and the checks that prove it untampered.

The hash of a record is the sha256 (hex) of the RFC 8785 canonical JSON of::

    {"v": "enclave-audit/1", "seq": …, "recorded_at": "YYYY-MM-DDTHH:MM:SS.ffffffZ",
     "tenant": …, "actor": …, "event_type": …, "event": "<the canonical event JSON text>",
     "prev_hash": …, "key_id": …}

so every field, the position in the chain (``seq``) and the link to the previous record
are covered; the event enters as the exact text stored. The signature is Ed25519 over the
32 bytes of that digest (base64 in storage). Record 1 links to ``GENESIS_HASH``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from core.audit.canonical import CanonicalJSONError, canonical_json, canonical_json_bytes
from core.audit.signing import AuditVerifier

__all__ = [
    "AuditRecord",
    "Problem",
    "ProblemKind",
    "check_record",
    "format_time",
    "parse_time",
    "record_hash",
]

HASH_VERSION = "enclave-audit/1"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

ProblemKind = Literal[
    "missing_seq",
    "out_of_order",
    "broken_link",
    "hash_mismatch",
    "unknown_key",
    "bad_signature",
    "head_mismatch",
    "truncated",
    "checkpoint_mismatch",
    "bad_checkpoint",
    "malformed",
]


def format_time(moment: datetime) -> str:
    """A UTC instant as hashed and exported: ISO 8601, microseconds, ``Z``.

    A naive datetime is UTC (SQLite gives back the naive UTC time it was given).
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time` (only that exact form is accepted)."""
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


def record_hash(
    *,
    prev_hash: str,
    seq: int,
    recorded_at: datetime,
    tenant: str,
    actor: str,
    event_type: str,
    event_json: str,
    key_id: str,
) -> str:
    """The sha256 hex digest that chains and signs a record (see the module docstring)."""
    envelope = {
        "v": HASH_VERSION,
        "seq": seq,
        "recorded_at": format_time(recorded_at),
        "tenant": tenant,
        "actor": actor,
        "event_type": event_type,
        "event": event_json,
        "prev_hash": prev_hash,
        "key_id": key_id,
    }
    return hashlib.sha256(canonical_json_bytes(envelope)).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored audit record (PII-free by contract: placeholders and pseudonymous ids)."""

    seq: int
    recorded_at: datetime
    tenant: str
    actor: str
    event_type: str
    event_json: str
    prev_hash: str
    hash: str
    signature: str
    key_id: str

    @property
    def event(self) -> dict[str, Any]:
        """The event, parsed."""
        value: dict[str, Any] = json.loads(self.event_json)
        return value

    def computed_hash(self) -> str:
        """The hash these fields should have."""
        return record_hash(
            prev_hash=self.prev_hash,
            seq=self.seq,
            recorded_at=self.recorded_at,
            tenant=self.tenant,
            actor=self.actor,
            event_type=self.event_type,
            event_json=self.event_json,
            key_id=self.key_id,
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the event parsed): one JSONL export or bundle line."""
        return {
            "seq": self.seq,
            "recorded_at": format_time(self.recorded_at),
            "tenant": self.tenant,
            "actor": self.actor,
            "event_type": self.event_type,
            "event": self.event,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "signature": self.signature,
            "key_id": self.key_id,
        }

    @classmethod
    def from_dict(cls, data: Any) -> AuditRecord:
        """Rebuild a record from :meth:`as_dict`'s form; raises ``ValueError`` if malformed."""
        if not isinstance(data, dict):
            msg = "a record must be a JSON object"
            raise ValueError(msg)
        fields = ("tenant", "actor", "event_type", "prev_hash", "hash", "signature", "key_id")
        for name in (*fields, "recorded_at"):
            if not isinstance(data.get(name), str):
                msg = f"field {name!r} is missing or not a string"
                raise ValueError(msg)
        seq = data.get("seq")
        if type(seq) is not int or seq < 1:
            msg = "field 'seq' is missing or not a positive integer"
            raise ValueError(msg)
        if not isinstance(data.get("event"), dict):
            msg = "field 'event' is missing or not an object"
            raise ValueError(msg)
        try:
            recorded_at = parse_time(data["recorded_at"])
            event_json = canonical_json(data["event"])
        except (ValueError, CanonicalJSONError) as exc:
            raise ValueError(str(exc)) from exc
        return cls(
            seq=seq,
            recorded_at=recorded_at,
            event_json=event_json,
            **{name: data[name] for name in fields},
        )


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with the chain, at which record."""

    seq: int | None
    kind: ProblemKind
    detail: str

    def describe(self) -> str:
        """One line for people."""
        where = "chain" if self.seq is None else f"record seq {self.seq}"
        return f"{where}: {self.kind.replace('_', ' ')} — {self.detail}"


def check_record(
    record: AuditRecord, *, expected_prev: str | None, verifier: AuditVerifier
) -> Problem | None:
    """The first thing wrong with one record (None: it is intact).

    ``expected_prev`` is the hash of the record before it (None: not known, not checked).
    """
    seq = record.seq
    if expected_prev is not None and record.prev_hash != expected_prev:
        return Problem(
            seq,
            "broken_link",
            f"prev_hash {record.prev_hash[:16]}… does not match the hash of record "
            f"{seq - 1} ({expected_prev[:16]}…)",
        )
    computed = record.computed_hash()
    if computed != record.hash:
        return Problem(
            seq,
            "hash_mismatch",
            f"stored hash {record.hash[:16]}…, the fields hash to {computed[:16]}…",
        )
    if not verifier.knows(record.key_id):
        return Problem(seq, "unknown_key", f"signed with key {record.key_id}, not a trusted key")
    try:
        signature = base64.b64decode(record.signature, validate=True)
    except (binascii.Error, ValueError):
        return Problem(seq, "bad_signature", "the signature is not base64")
    if not verifier.verify(record.key_id, signature, bytes.fromhex(record.hash)):
        return Problem(seq, "bad_signature", f"not a valid signature by key {record.key_id}")
    return None
