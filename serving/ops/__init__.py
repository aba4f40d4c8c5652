"""Operating Enclave: the ``enclave`` command's tools, the viability canary, evals and alerts.

What builds and runs the application stays in ``serving`` (builder, deployments, launcher,
clients, runtime environment, routing, security bootstrap); this package holds what an
operator runs against it or what watches it: the ``enclave`` command (``cli``, the
console script's entry point) and its ``*_cli`` modules (audit, history, knowledge bases,
keys, places, canary, eval), the canary itself (``canary``, its report and
metrics in ``canary_report``, its schedule in the API replica in ``canary_schedule``), the
eval datasets and scoring (``eval_datasets``, ``eval_scoring``; the runs are stored by
``api.stores.evals``), and the alert and checkpoint webhooks.
"""

from __future__ import annotations

from serving.ops.alert_webhook import CanaryAlerter, WebhookNotifier
from serving.ops.canary import CanaryMetrics, CanaryReport, CanaryStep, run_canary
from serving.ops.canary_schedule import (
    CanaryScheduler,
    start_canary_scheduler,
    start_canary_when_ready,
)
from serving.ops.checkpoint_webhook import WebhookCheckpoints

__all__ = [
    "CanaryAlerter",
    "CanaryMetrics",
    "CanaryReport",
    "CanaryScheduler",
    "CanaryStep",
    "WebhookCheckpoints",
    "WebhookNotifier",
    "run_canary",
    "start_canary_scheduler",
    "start_canary_when_ready",
]
