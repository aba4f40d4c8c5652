"""``enclave canary``: one canary conversation against a running stack, from the command line.

The command runs one canary conversation (``serving.ops.canary``) against ``--base-url``
(default: this host's API) with the key from ``ENCLAVE_CANARY_API_KEY``,
``canary.api_key_file``, or the embedded stack's own canary key; prints the report
(``--json`` for machines); records the run in the SQL store (``canary_runs``;
``--no-record`` skips it), where every API replica reads it for its ``/metrics``; posts a
failure or recovery to the alert webhook when the state changed since the last run; exits 0
when every step passed, 1 when one failed, 2 when it could not run at all. A run that could
not be recorded is reported on stderr but keeps its exit status: the stale-canary alert is
what notices a canary whose results stop arriving. The scheduled canary of the embedded
stack is ``serving.ops.canary_schedule``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, write_to_textfile

from core.settings import Settings
from serving.ops.alert_webhook import CanaryAlerter, WebhookNotifier
from serving.ops.canary import CanaryMetrics, CanaryReport, run_canary
from serving.ops.canary_schedule import API_KEY_ENV, alert_state_file, canary_api_key, record_run

__all__ = ["add_canary_commands"]

_log = logging.getLogger("enclave.canary")


def _print_report(report: CanaryReport) -> None:
    for step in report.steps:
        line = f"{step.name:<12} {step.status:<8} {step.duration_s:6.2f} s"
        if step.message:
            line += f"  {step.message}"
        if step.request_id and step.status == "failed":
            line += f"  [request id {step.request_id}]"
        print(line)
    print(report.summary())


def _canary(settings: Settings, args: argparse.Namespace) -> int:
    api_key = canary_api_key(settings)
    if api_key is None:
        print(
            f"enclave canary: no API key: set {API_KEY_ENV} or canary.api_key_file "
            "(a staff key: `enclave keys create --name canary --role staff`).",
            file=sys.stderr,
        )
        return 2
    base_url = args.base_url or f"http://{settings.api.host}:{settings.api.port}"
    report = run_canary(base_url, api_key, settings.canary)
    if args.metrics_file:
        registry = CollectorRegistry()
        CanaryMetrics(registry).record(report)
        write_to_textfile(str(args.metrics_file), registry)
    if args.record:
        try:
            record_run(settings, report)
        except Exception as exc:  # the result still counts; the stale alert notices the gap
            _log.warning("canary run not recorded", exc_info=True)
            print(
                f"enclave canary: the run could not be recorded in the database "
                f"({type(exc).__name__}); the API's /metrics will not show it.",
                file=sys.stderr,
            )
    notifier = WebhookNotifier(settings.alerts)
    if notifier.enabled:
        CanaryAlerter(notifier, alert_state_file(settings)).observe(report)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(report)
    return 0 if report.ok else 1


def add_canary_commands(commands: Any) -> None:
    """Register ``enclave canary``."""
    canary = commands.add_parser(
        "canary", help="run one synthetic conversation through the API and check every step"
    )
    canary.add_argument(
        "--base-url", help="the API's URL (default: http://<api.host>:<api.port>; /v1 optional)"
    )
    canary.add_argument("--json", action="store_true", help="print the report as JSON")
    canary.add_argument(
        "--metrics-file",
        type=Path,
        help="also write the run's metrics in Prometheus text format (textfile collector)",
    )
    canary.add_argument(
        "--no-record",
        dest="record",
        action="store_false",
        help="do not record the run in the database (whose runs every API replica exports)",
    )
    canary.set_defaults(handler=_canary)
