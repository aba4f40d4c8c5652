"""The canary the embedded stack runs on a schedule, and what ``enclave canary`` shares with it.

``start_canary_scheduler`` is what the API replica calls once the stack is ready
(``start_canary_when_ready``): a thread that issues the canary its own staff key once
(``<data_dir>/secrets/canary-api-key``, mode 600), runs the canary (``serving.ops.canary``)
every ``canary.interval_s``, records each run in the SQL store (``canary_runs``; and, when
given a registry, in that registry's metrics) and alerts on state changes. The command
(``serving.ops.canary_cli``) uses the same key lookup, recording and alert state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry

from core.settings import Settings
from serving.ops.alert_webhook import CanaryAlerter, WebhookNotifier
from serving.ops.canary import STEPS, CanaryMetrics, CanaryReport, CanaryStep, run_canary

__all__ = [
    "API_KEY_ENV",
    "CanaryScheduler",
    "Stoppable",
    "alert_state_file",
    "canary_api_key",
    "ensure_canary_key",
    "record_run",
    "start_canary_scheduler",
    "start_canary_when_ready",
]

_log = logging.getLogger("enclave.canary")

API_KEY_ENV = "ENCLAVE_CANARY_API_KEY"
_KEY_NAME = "canary (embedded stack)"


class Stoppable(Protocol):
    """Something started that the launcher stops on shutdown."""

    def stop(self) -> None:
        """Stop; return promptly."""
        ...


def _embedded_key_file(settings: Settings) -> Path:
    return settings.paths.data_dir / "secrets" / "canary-api-key"


def alert_state_file(settings: Settings) -> Path:
    return settings.paths.data_dir / "canary" / "state.json"


def canary_api_key(settings: Settings) -> str | None:
    """The canary's key: ``ENCLAVE_CANARY_API_KEY``, ``canary.api_key_file``, or the key the
    embedded stack issued itself; None when there is none."""
    from_env = os.environ.get(API_KEY_ENV, "").strip()
    if from_env:
        return from_env
    for path in (settings.canary.api_key_file, _embedded_key_file(settings)):
        if path is not None and path.is_file():
            return path.read_text(encoding="utf-8").strip() or None
    return None


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
    os.replace(partial, path)


def ensure_canary_key(settings: Settings) -> str:
    """The embedded canary's staff key: the stored one while it is valid, else a new one."""
    from api.security import Unauthenticated, issue_api_key, verify_api_key
    from api.security.key_store import SqlApiKeyStore
    from core.db import Database
    from serving.runtime_env import api_key_pepper

    path = _embedded_key_file(settings)
    prefix = settings.auth.api_keys.prefix
    pepper = api_key_pepper(settings)

    async def work() -> str:
        db = Database.from_settings(settings)
        try:
            store = SqlApiKeyStore(db)
            if path.is_file():
                stored = path.read_text(encoding="utf-8").strip()
                try:
                    await verify_api_key(stored, store, prefix=prefix, pepper=pepper)
                    return stored
                except Unauthenticated:
                    _log.warning("stored canary key is no longer valid; issuing a new one")
            issued = issue_api_key(
                tenant="default", roles=["staff"], name=_KEY_NAME, prefix=prefix, pepper=pepper
            )
            await store.add(issued.record, created_by="canary")
            _write_secret(path, issued.plaintext)
            return issued.plaintext
        finally:
            await db.dispose()

    return asyncio.run(work())


def record_run(settings: Settings, report: CanaryReport) -> int:
    """Record ``report`` in the SQL store's ``canary_runs`` (the newest 1000 are kept);
    return the run's id. Raises when the database cannot take it."""
    from core.db import Database
    from core.db.canary_schema import record_canary_run

    failed = report.failed_step

    async def work() -> int:
        db = Database.from_settings(settings)
        try:
            async with db.transaction() as connection:
                return await record_canary_run(
                    connection,
                    report.started_at,
                    report.started_at + timedelta(seconds=report.duration_s),
                    report.ok,
                    failed.name if failed else None,
                    report.duration_s,
                    report.as_dict(),
                )
        finally:
            await db.dispose()

    return asyncio.run(work())


def _setup_failure(base_url: str, message: str) -> CanaryReport:
    steps = [CanaryStep(name=STEPS[0], status="failed", message=message)]
    steps += [CanaryStep(name=name, status="skipped", message="auth failed") for name in STEPS[1:]]
    return CanaryReport(
        base_url=base_url, started_at=datetime.now(UTC), duration_s=0.0, steps=steps
    )


class CanaryScheduler:
    """Runs the canary every ``canary.interval_s`` on a daemon thread."""

    def __init__(
        self,
        settings: Settings,
        base_url: str,
        *,
        metrics: CanaryMetrics | None,
        alerter: CanaryAlerter,
        until: threading.Event | None = None,
        recorder: Callable[[CanaryReport], object] | None = None,
    ) -> None:
        """``metrics``: this process's canary metrics, or None where the API replicas export
        the recorded runs; ``recorder``: where each run is recorded (default: the SQL store
        of ``settings``)."""
        self._settings = settings
        self._base_url = base_url
        self._metrics = metrics
        self._recorder = recorder or (lambda report: record_run(settings, report))
        self._alerter = alerter
        self._stopping = until if until is not None else threading.Event()
        self._thread = threading.Thread(target=self._loop, name="enclave-canary", daemon=True)
        self._key: str | None = None

    def start(self) -> None:
        """Run the first canary now, then every interval."""
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling; a run still in flight is discarded, not reported."""
        self._stopping.set()
        self._thread.join(timeout=5.0)

    def run_once(self) -> CanaryReport | None:
        """One run, recorded and alerted on; None when stopped meanwhile (shutting down)."""
        try:
            if self._key is None:
                self._key = ensure_canary_key(self._settings)
        except Exception as exc:  # the schedule goes on; the failure is reported like any other
            _log.exception("could not obtain the canary's API key")
            report = _setup_failure(
                self._base_url, f"could not obtain the canary's API key: {type(exc).__name__}"
            )
        else:
            report = run_canary(self._base_url, self._key, self._settings.canary)
        if self._stopping.is_set():
            return None  # the stack is going down under this run: its result means nothing
        if report.failed_step is not None and report.failed_step.name == "auth":
            self._key = None  # revoked or lost: re-check (and reissue) on the next run
        if self._metrics is not None:
            self._metrics.record(report)
        try:
            self._recorder(report)
        except Exception:  # the next run records again; meanwhile the stale alert may fire
            _log.exception("canary run could not be recorded in the database")
        self._alerter.observe(report)
        return report

    def _loop(self) -> None:
        interval = self._settings.canary.interval_s
        while not self._stopping.is_set():
            try:
                self.run_once()
            except Exception:  # e.g. the state file's disk is full: keep the schedule
                _log.exception("canary run could not be recorded")
            if self._stopping.wait(interval):
                return


class _Disabled:
    def stop(self) -> None:
        """Nothing runs."""


def start_canary_scheduler(
    settings: Settings,
    base_url: str,
    *,
    registry: CollectorRegistry | None = REGISTRY,
    until: threading.Event | None = None,
) -> Stoppable:
    """Start the embedded stack's canary (``canary.enabled``); stop it before the stack.

    Each run is recorded in the SQL store; ``registry``: also count it in this process's
    ``enclave_canary_*`` metrics there (None: the API replicas export the recorded runs,
    ``core.metrics.CanaryResults``).

    ``until``: the launcher's shutdown event; once it is set the schedule ends and a run
    still in flight is discarded (so stopping the stack never reads as a canary failure).
    """
    if not settings.canary.enabled:
        return _Disabled()
    scheduler = CanaryScheduler(
        settings,
        base_url,
        metrics=CanaryMetrics(registry) if registry is not None else None,
        alerter=CanaryAlerter(WebhookNotifier(settings.alerts), alert_state_file(settings)),
        until=until,
    )
    scheduler.start()
    _log.info("canary scheduled", extra={"interval_s": settings.canary.interval_s})
    return scheduler


def start_canary_when_ready(
    settings: Settings,
    base_url: str,
    *,
    timeout_s: float = 900.0,
) -> threading.Event:
    """Start the canary schedule once ``base_url`` answers ``/readyz`` (from the API replica:
    the replica is built before the application serves, and a first run against a stack
    still starting would alert for nothing). Set the returned event to stop it.

    The runs go to the SQL store only: the API's ``/metrics`` exports them from there
    (``core.metrics.CanaryResults`` on the replica's registry), like a CronJob's runs.
    """
    stop = threading.Event()

    def wait_then_start() -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200:
                    start_canary_scheduler(settings, base_url, registry=None, until=stop)
                    return
            except httpx.HTTPError:
                pass
            stop.wait(5.0)
        _log.warning("canary not started: the stack did not become ready")

    threading.Thread(target=wait_then_start, name="canary-start", daemon=True).start()
    return stop
