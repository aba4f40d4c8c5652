"""The checkpoint job's sinks: the file, and the alert webhook (a real HTTP receiver)."""

from __future__ import annotations

from pathlib import Path

from api.stores.audit_checkpoints import CheckpointJob
from core.audit import AuditLog, AuditSigner, AuditVerifier, Checkpoint, CheckpointFile
from core.db import Database
from serving.ops.checkpoint_webhook import WebhookCheckpoints
from tests.unit.test_canary_report import Receiver, _notifier, receiver

__all__ = ["receiver"]  # the fixture, shared with the canary's tests


async def _append(audit: AuditLog, database: Database, count: int) -> None:
    for n in range(count):
        async with audit.transaction(database) as connection:
            await audit.append(connection, tenant="t", actor="u", event_type="chat", event={"n": n})


async def test_each_checkpoint_reaches_the_file_and_the_alert_webhook(
    database: Database, tmp_path: Path, receiver: Receiver
) -> None:
    signer = AuditSigner.generate()
    audit = AuditLog(signer)
    await _append(audit, database, 4)
    file = CheckpointFile(tmp_path / "audit" / "checkpoints.jsonl")
    webhook = WebhookCheckpoints(_notifier(receiver.url))
    job = CheckpointJob(database, audit, [file, webhook], interval_s=3600)
    await job.start()
    await _append(audit, database, 1)
    await job.stop()  # shutdown: one more checkpoint, of the head as it is now
    (line,) = file.path.read_text().splitlines()
    written = Checkpoint.parse(line)
    assert written.seq == 5
    assert written.signature_ok(AuditVerifier([signer.public_key]))
    (posted,) = receiver.payloads
    assert posted["enclave_audit_checkpoint"] == written.as_dict()
    assert "seq 5" in posted["text"]


async def test_a_failing_sink_does_not_keep_the_checkpoint_from_the_others(
    database: Database, tmp_path: Path, receiver: Receiver
) -> None:
    audit = AuditLog(AuditSigner.generate())
    await _append(audit, database, 2)
    receiver.statuses = [500, 500]  # the webhook refuses, its retry too
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    broken_file = CheckpointFile(blocked / "checkpoints.jsonl")
    good_file = CheckpointFile(tmp_path / "ok.jsonl")
    job = CheckpointJob(
        database,
        audit,
        [WebhookCheckpoints(_notifier(receiver.url)), broken_file, good_file],
        interval_s=None,
    )
    checkpoint = await job.run_once()
    assert Checkpoint.parse(good_file.path.read_text().strip()) == checkpoint
