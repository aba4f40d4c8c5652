"""The signed audit bundle: a JSONL export that anyone can check offline.

The bundle is a JSONL file. Each line but the last is one record in canonical JSON (the
event as an object); the last line is the manifest::

    {"format": "enclave-audit-bundle/1", "created_at": …, "filters": {…},
     "first_seq": …, "last_seq": …, "count": …,
     "records_sha256": sha256 hex of the record lines' bytes (newlines included),
     "seq_ranges": [[first, last], …] the runs of seq numbers the bundle holds,
     "key_id": …, "public_key": base64 raw Ed25519 key that signs the manifest,
     "keys": {key_id: base64 public key, …}   every key that signed a record,
     "signature": base64 Ed25519 over the canonical JSON of the manifest without it}

:func:`verify_bundle` needs nothing but the file. It checks the manifest's signature, then
every record's hash, signature and link to the record before it (whenever the bundle holds
both; with no filters the records must be consecutive), then which seq numbers are there
against ``seq_ranges`` (without it, against ``first_seq`` to ``last_seq`` when unfiltered), then
the counts and the digest. It names the first record (by ``seq`` and line) or the manifest
that is wrong; a record deleted anywhere, the first or last included, is named by its seq
number and the records on either side of the gap. A bundle proves
it was written by the holder of a key; that the key is *the deployment's* key is for the
reader to check — pass ``trusted_key_ids`` (CLI: ``--key-id``) with the published id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from core.audit.canonical import CanonicalJSONError, canonical_json_bytes
from core.audit.checkpoint import Checkpoint, compare_head
from core.audit.export import ExportFilter, iter_records, record_line
from core.audit.records import AuditRecord, Problem, check_record, format_time
from core.audit.signing import AuditSigner, AuditVerifier, key_id_of
from core.db import GENESIS_HASH, Database

__all__ = [
    "BUNDLE_FORMAT",
    "BundleProblem",
    "BundleReport",
    "BundleSummary",
    "verify_bundle",
    "write_bundle",
]

BUNDLE_FORMAT = "enclave-audit-bundle/1"
_MANIFEST_FIELDS = {
    "format": str,
    "created_at": str,
    "filters": dict,
    "count": int,
    "records_sha256": str,
    "key_id": str,
    "public_key": str,
    "keys": dict,
    "signature": str,
}


@dataclass(frozen=True, slots=True)
class BundleSummary:
    """What :func:`write_bundle` wrote."""

    path: Path
    count: int
    first_seq: int | None
    last_seq: int | None
    key_id: str
    records_sha256: str


def _manifest_signature_input(manifest: dict[str, Any]) -> bytes:
    return canonical_json_bytes({k: v for k, v in manifest.items() if k != "signature"})


async def write_bundle(
    db: Database,
    path: Path,
    signer: AuditSigner,
    verifier: AuditVerifier,
    filters: ExportFilter | None = None,
    *,
    batch_size: int = 1000,
) -> BundleSummary:
    """Write the matching records and a signed manifest to ``path`` (atomically)."""
    filters = filters or ExportFilter()
    digest = hashlib.sha256()
    count, first, last = 0, None, None
    runs: list[list[int]] = []
    key_ids: set[str] = set()
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with temporary.open("wb") as handle:
            async for record in iter_records(db, filters, batch_size=batch_size):
                line = record_line(record).encode("utf-8")
                handle.write(line)
                digest.update(line)
                count += 1
                first = record.seq if first is None else first
                last = record.seq
                if runs and runs[-1][1] == record.seq - 1:
                    runs[-1][1] = record.seq
                else:
                    runs.append([record.seq, record.seq])
                key_ids.add(record.key_id)
            keys = {signer.key_id: signer.public_key_b64}
            for key_id in sorted(key_ids):
                public = verifier.public_key(key_id)
                if public is not None:
                    keys[key_id] = base64.b64encode(public).decode("ascii")
            manifest: dict[str, Any] = {
                "format": BUNDLE_FORMAT,
                "created_at": format_time(datetime.now(UTC)),
                "filters": filters.as_dict(),
                "first_seq": first,
                "last_seq": last,
                "count": count,
                "records_sha256": digest.hexdigest(),
                "seq_ranges": runs,
                "key_id": signer.key_id,
                "public_key": signer.public_key_b64,
                "keys": keys,
            }
            signature = signer.sign(_manifest_signature_input(manifest))
            manifest["signature"] = base64.b64encode(signature).decode("ascii")
            handle.write(canonical_json_bytes(manifest) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return BundleSummary(path, count, first, last, signer.key_id, digest.hexdigest())


@dataclass(frozen=True, slots=True)
class BundleProblem:
    """The first thing wrong in a bundle: in a record (by seq and line) or the manifest."""

    where: Literal["record", "manifest"]
    line: int
    seq: int | None
    kind: str
    detail: str

    def describe(self) -> str:
        """One line for people."""
        if self.where == "manifest":
            return f"manifest (line {self.line}): {self.kind.replace('_', ' ')} — {self.detail}"
        seq = "" if self.seq is None else f"seq {self.seq}, "
        return f"record ({seq}line {self.line}): {self.kind.replace('_', ' ')} — {self.detail}"


@dataclass(frozen=True, slots=True)
class BundleReport:
    """The outcome of :func:`verify_bundle`."""

    ok: bool
    count: int
    first_seq: int | None = None
    last_seq: int | None = None
    key_id: str | None = None
    key_ids: list[str] = field(default_factory=list)
    problem: BundleProblem | None = None

    def describe(self) -> str:
        """One line for people."""
        if self.problem is not None:
            return f"FAILED: {self.problem.describe()}"
        span = "" if self.first_seq is None else f", seq {self.first_seq}–{self.last_seq}"
        return (
            f"OK: {self.count} records{span}; manifest signed by key {self.key_id}; "
            f"records signed by {', '.join(self.key_ids) or 'no key'}"
        )


class _Broken(Exception):
    def __init__(self, problem: BundleProblem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def _last_line(handle: BinaryIO) -> tuple[int, bytes]:
    """The offset and bytes of the file's last non-empty line, read from the end."""
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    tail = b""
    position = end
    while position > 0:
        step = min(65536, position)
        position -= step
        handle.seek(position)
        tail = handle.read(step) + tail
        stripped = tail.rstrip(b"\r\n")
        newline = stripped.rfind(b"\n")
        if newline >= 0:
            return position + newline + 1, stripped[newline + 1 :]
    stripped = tail.rstrip(b"\r\n")
    return 0, stripped


def _manifest_problem(line: int, kind: str, detail: str) -> _Broken:
    return _Broken(BundleProblem("manifest", line, None, kind, detail))


def _decode_key(encoded: Any, line: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise _manifest_problem(line, "malformed", f"{what} is not a base64 Ed25519 public key")
    return raw


def _read_manifest(raw: bytes, line: int) -> tuple[dict[str, Any], AuditVerifier]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _manifest_problem(line, "malformed", f"not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise _manifest_problem(line, "malformed", f"not a {BUNDLE_FORMAT} manifest")
    for name, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(name), kind):
            raise _manifest_problem(line, "malformed", f"field {name!r} missing or mistyped")
    public = _decode_key(manifest["public_key"], line, "public_key")
    if key_id_of(public) != manifest["key_id"]:
        raise _manifest_problem(line, "malformed", "key_id is not the id of public_key")
    try:
        signature = base64.b64decode(manifest["signature"], validate=True)
        message = _manifest_signature_input(manifest)
    except (binascii.Error, ValueError, CanonicalJSONError) as exc:
        raise _manifest_problem(line, "malformed", f"cannot check the signature: {exc}") from exc
    manifest_key = AuditVerifier([public])
    if not manifest_key.verify(manifest["key_id"], signature, message):
        raise _manifest_problem(
            line, "bad_signature", "the manifest's signature does not match its content"
        )
    record_keys = AuditVerifier()
    for key_id, encoded in manifest["keys"].items():
        if record_keys.add(_decode_key(encoded, line, f"keys[{key_id!r}]")) != key_id:
            raise _manifest_problem(line, "malformed", f"keys[{key_id!r}] has another key id")
    return manifest, record_keys


def _record_lines(handle: BinaryIO, stop: int) -> Iterator[tuple[int, bytes]]:
    handle.seek(0)
    consumed, number = 0, 0
    while consumed < stop:
        raw = handle.readline()
        if not raw:
            return
        consumed += len(raw)
        number += 1
        yield number, raw


def _record_problem(line: int, problem: Problem) -> _Broken:
    return _Broken(BundleProblem("record", line, problem.seq, problem.kind, problem.detail))


@dataclass(slots=True)
class _Run:
    """Consecutive seq numbers found in the bundle, with the lines of their ends."""

    first: int
    last: int
    first_line: int
    last_line: int


def _seq_span(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}–{last}"


def _expected_ranges(manifest: dict[str, Any], contiguous: bool) -> list[tuple[int, int]] | None:
    """The runs the manifest says the bundle holds; None when it cannot say."""
    ranges = manifest.get("seq_ranges")
    if isinstance(ranges, list):
        return [(int(r[0]), int(r[1])) for r in ranges]
    # Bundles written before seq_ranges: an unfiltered one holds first_seq..last_seq.
    first, last = manifest.get("first_seq"), manifest.get("last_seq")
    if contiguous and isinstance(first, int) and isinstance(last, int):
        return [(first, last)]
    return None


def _gaps(expected: list[tuple[int, int]], runs: list[_Run]) -> Iterator[tuple[int, int]]:
    """Seq ranges the manifest names and no record in the bundle holds."""
    found = iter(runs)
    current = next(found, None)
    for first, last in expected:
        cursor = first
        while cursor <= last:
            while current is not None and current.last < cursor:
                current = next(found, None)
            if current is None or current.first > last:
                yield cursor, last
                break
            if current.first > cursor:
                yield cursor, current.first - 1
            cursor = current.last + 1


def _neighbours(runs: list[_Run], first: int, last: int) -> str:
    before = next((r for r in reversed(runs) if r.last < first), None)
    after = next((r for r in runs if r.first > last), None)
    if before is not None and after is not None:
        return (
            f"between seq {before.last} (line {before.last_line}) and "
            f"seq {after.first} (line {after.first_line})"
        )
    if before is not None:
        return f"after seq {before.last} (line {before.last_line}), the last record left"
    if after is not None:
        return f"before seq {after.first} (line {after.first_line}), the first record left"
    return "and no record is left"


def _check_ranges(expected: list[tuple[int, int]], runs: list[_Run], manifest_line: int) -> None:
    """Name every seq the manifest lists that the records lack, and where it was."""
    gaps = list(_gaps(expected, runs))
    if not gaps:
        return
    named = [f"{_seq_span(a, b)} {_neighbours(runs, a, b)}" for a, b in gaps[:10]]
    more = f"; and {len(gaps) - 10} more gaps" if len(gaps) > 10 else ""
    missing = sum(b - a + 1 for a, b in gaps)
    detail = f"{missing} record(s) missing: " + "; ".join(named) + more
    after = next((r for r in runs if r.first > gaps[0][1]), None)
    line = manifest_line if after is None else after.first_line
    raise _Broken(BundleProblem("record", line, gaps[0][0], "missing_seq", detail))


def _check_records(
    handle: BinaryIO,
    stop: int,
    manifest: dict[str, Any],
    keys: AuditVerifier,
    trusted: Collection[str] | None,
    *,
    watched: int | None = None,
) -> tuple[int, int | None, int | None, str, str | None, list[str]]:
    contiguous = not any(
        name in manifest["filters"] for name in ("since", "until", "tenant", "actor", "event_type")
    )
    digest = hashlib.sha256()
    count, first, previous, number = 0, None, None, 0
    used: set[str] = set()
    runs: list[_Run] = []
    hash_at: str | None = None
    for number, raw in _record_lines(handle, stop):
        digest.update(raw)
        try:
            record = AuditRecord.from_dict(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _Broken(BundleProblem("record", number, None, "malformed", str(exc))) from exc
        seq = record.seq
        if previous is not None and seq <= previous.seq:
            detail = f"seq {seq} follows seq {previous.seq}"
            raise _record_problem(number, Problem(seq, "out_of_order", detail))
        if previous is not None and contiguous and seq != previous.seq + 1:
            missing = _seq_span(previous.seq + 1, seq - 1)
            detail = (
                f"{missing} missing: the bundle has no filter, but goes from seq "
                f"{previous.seq} (line {number - 1}) to seq {seq} (line {number})"
            )
            raise _record_problem(number, Problem(previous.seq + 1, "missing_seq", detail))
        expected = None
        if previous is not None and seq == previous.seq + 1:
            expected = previous.hash
        elif seq == 1:
            expected = GENESIS_HASH
        problem = check_record(record, expected_prev=expected, verifier=keys)
        if problem is None and trusted is not None and record.key_id not in trusted:
            problem = Problem(seq, "unknown_key", f"key {record.key_id} is not a trusted key")
        if problem is not None:
            raise _record_problem(number, problem)
        used.add(record.key_id)
        if seq == watched:
            hash_at = record.hash
        if runs and runs[-1].last == seq - 1:
            runs[-1].last, runs[-1].last_line = seq, number
        else:
            runs.append(_Run(seq, seq, number, number))
        count += 1
        first = seq if first is None else first
        previous = record
    last = None if previous is None else previous.seq
    ranges = _expected_ranges(manifest, contiguous)
    if ranges is not None:
        _check_ranges(ranges, runs, number + 1)
    return count, first, last, digest.hexdigest(), hash_at, sorted(used)


def _check_checkpoint(
    checkpoint: Checkpoint,
    manifest: dict[str, Any],
    line: int,
    keys: AuditVerifier,
    *,
    last: int | None,
    hash_at: str | None,
) -> None:
    if manifest["filters"]:
        raise _manifest_problem(
            line,
            "checkpoint_mismatch",
            "a checkpoint is compared with an unfiltered bundle only "
            "(export one without --from, --to or --tenant)",
        )
    problem = compare_head(checkpoint, keys, last, hash_at)
    if problem is not None:
        raise _Broken(BundleProblem("manifest", line, problem.seq, problem.kind, problem.detail))


def verify_bundle(
    path: Path,
    *,
    trusted_key_ids: Collection[str] | None = None,
    checkpoint: Checkpoint | None = None,
) -> BundleReport:
    """Check a bundle offline; the report names the first broken record or the manifest.

    ``trusted_key_ids``: when given, the manifest and every record must be signed by one
    of these keys. ``checkpoint``: the latest signed head checkpoint the reader holds (from
    WORM storage); an unfiltered bundle must still hold the head it saw, so a cut-off tail
    is reported. Raises ``OSError`` if the file cannot be read.
    """
    with path.open("rb") as handle:
        start, raw = _last_line(handle)
        manifest_line = 1
        try:
            if not raw:
                raise _manifest_problem(1, "malformed", "the file is empty")
            manifest_line = sum(1 for _ in _record_lines(handle, start)) + 1
            manifest, keys = _read_manifest(raw, manifest_line)
            if trusted_key_ids is not None and manifest["key_id"] not in trusted_key_ids:
                raise _manifest_problem(
                    manifest_line,
                    "unknown_key",
                    f"signed by key {manifest['key_id']}, not one of the trusted keys",
                )
            watched = None if checkpoint is None else checkpoint.seq
            count, first, last, digest, hash_at, used = _check_records(
                handle, start, manifest, keys, trusted_key_ids, watched=watched
            )
            expected = {
                "count": count,
                "first_seq": first,
                "last_seq": last,
                "records_sha256": digest,
            }
            for name, value in expected.items():
                if manifest.get(name) != value:
                    raise _manifest_problem(
                        manifest_line,
                        "mismatch",
                        f"{name} says {manifest.get(name)!r}, the records give {value!r}",
                    )
            if checkpoint is not None:
                _check_checkpoint(
                    checkpoint, manifest, manifest_line, keys, last=last, hash_at=hash_at
                )
        except _Broken as broken:
            return BundleReport(False, 0, problem=broken.problem)
    return BundleReport(True, count, first, last, manifest["key_id"], used)
