"""The alert webhook as an audit-checkpoint sink: each signed head checkpoint is posted.

The receiver (a chat channel, an Alertmanager relay) keeps its own history, outside the
database and outside this box: one more copy of the chain's end that a database
administrator cannot rewrite. The payload is the checkpoint itself (seq, hash, time, key id,
signature) and one line of text; no record content.
"""

from __future__ import annotations

from core.audit import Checkpoint
from serving.ops.alert_webhook import WebhookNotifier

__all__ = ["WebhookCheckpoints"]


class WebhookCheckpoints:
    """Posts each checkpoint to the alert webhook (when one is configured)."""

    def __init__(self, notifier: WebhookNotifier) -> None:
        """Post through ``notifier`` (its allowed-hosts check and retry apply)."""
        self._notifier = notifier

    def write(self, checkpoint: Checkpoint) -> None:
        """Post one checkpoint; ``OSError`` when the receiver did not take it."""
        if not self._notifier.enabled:
            return
        payload = {
            "text": f"Enclave audit checkpoint: chain head seq {checkpoint.seq} at "
            f"{checkpoint.at} (key {checkpoint.key_id})",
            "enclave_audit_checkpoint": checkpoint.as_dict(),
        }
        if not self._notifier.post(payload):
            msg = "the alert webhook did not accept the audit checkpoint"
            raise OSError(msg)
