"""Canary failures and recoveries, posted to a Slack-compatible webhook inside the premises.

``WebhookNotifier`` posts ``{"text": ..., "blocks": [...]}`` (Slack's incoming-webhook shape,
which Mattermost, Rocket.Chat and Alertmanager relays accept too) with a timeout and one
retry after a backoff; it never raises into its caller. The URL must name an allowed host
(``alerts.allowed_hosts``: loopback and in-cluster Services by default), so an alert never
leaves the premises. ``CanaryAlerter`` posts only on a change of state: pass → fail (the
failing step and request id) and fail → pass (a recovery); repeated failures stay quiet.
Payloads carry step names, our own messages and request ids: no key, no user text, no PII.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from core.settings import AlertSettings
from serving.ops.canary import CanaryReport

__all__ = [
    "CanaryAlerter",
    "WebhookNotifier",
    "failure_payload",
    "recovery_payload",
]

_log = logging.getLogger("enclave.alerts")

_HEADER_MAX = 150  # Slack's limit for a header block's text
_SECTION_MAX = 2900  # below Slack's 3000 for a section's text

Transition = Literal["failure", "recovery"]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_payload(report: CanaryReport) -> dict[str, Any]:
    """The alert for a canary that just started failing."""
    failed = report.failed_step
    step = failed.name if failed else "unknown"
    why = failed.message if failed else "no step passed"
    request_id = failed.request_id if failed and failed.request_id else "none"
    text = (
        f":red_circle: Enclave canary failing at step `{step}`: {why} "
        f"(request id {request_id}) — {report.base_url}"
    )
    lines = [
        f"*Step:* `{step}`",
        f"*Why:* {why}",
        f"*Request id:* `{request_id}`",
        "*Steps:* " + ", ".join(f"{s.name} {s.status}" for s in report.steps),
    ]
    return _payload(text, "Enclave canary failing", "\n".join(lines), report)


def recovery_payload(report: CanaryReport, failing_since: datetime | None) -> dict[str, Any]:
    """The alert for a canary that passes again after failing."""
    since = ""
    if failing_since is not None:
        minutes = (report.started_at - failing_since).total_seconds() / 60
        since = f" after failing for {minutes:.0f} min (since {failing_since:%Y-%m-%d %H:%M} UTC)"
    text = f":large_green_circle: Enclave canary recovered{since} — {report.base_url}"
    body = f"Every step passed{since}: " + ", ".join(s.name for s in report.steps)
    return _payload(text, "Enclave canary recovered", body, report)


def _payload(text: str, header: str, body: str, report: CanaryReport) -> dict[str, Any]:
    context = (
        f"{report.base_url} · run of {report.started_at:%Y-%m-%d %H:%M:%S} UTC · "
        f"{report.duration_s:.1f} s"
    )
    return {
        "text": _clip(text, _SECTION_MAX),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _clip(header, _HEADER_MAX)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(body, _SECTION_MAX)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


class WebhookNotifier:
    """Posts JSON payloads to the configured webhook; one retry, never raises."""

    def __init__(
        self,
        settings: AlertSettings,
        *,
        backoff_s: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = settings.webhook_url
        self._timeout = settings.timeout_s
        self._backoff_s = backoff_s
        self._transport = transport
        # The settings validator refuses such a URL already; a copy built around it must not
        # turn this into an egress path.
        self.refusal = None if self._url is None else settings.url_problem(self._url)
        if self.refusal is not None:
            _log.error("alert webhook refused", extra={"reason": self.refusal})

    @property
    def enabled(self) -> bool:
        """Whether alerts go anywhere."""
        return self._url is not None and self.refusal is None

    def post(self, payload: dict[str, Any]) -> bool:
        """Send ``payload``; True once the receiver accepted it (2xx)."""
        if self._url is None or self.refusal is not None:
            return False
        for attempt in (1, 2):
            try:
                with httpx.Client(timeout=self._timeout, transport=self._transport) as http:
                    response = http.post(self._url, json=payload)
            except httpx.HTTPError as exc:
                _log.warning(
                    "alert webhook unreachable",
                    extra={"attempt": attempt, "error_type": type(exc).__name__},
                )
            else:
                if response.is_success:
                    return True
                _log.warning(
                    "alert webhook refused the payload",
                    extra={"attempt": attempt, "status": response.status_code},
                )
                retriable = response.status_code == 429 or response.status_code >= 500
                if not retriable:
                    return False
            if attempt == 1:
                time.sleep(self._backoff_s)
        return False


@dataclass(slots=True)
class _State:
    ok: bool
    since: datetime


class CanaryAlerter:
    """Posts a failure when the canary starts failing and a recovery when it passes again.

    With no history (first run, or a fresh CronJob pod) the canary is taken as passing, so a
    first failure alerts and a first pass stays quiet. ``state_file`` keeps the state across
    processes (``enclave canary`` runs once per process).
    """

    def __init__(self, notifier: WebhookNotifier, state_file: Path | None = None) -> None:
        self._notifier = notifier
        self._state_file = state_file
        self._state = self._load()

    def observe(self, report: CanaryReport) -> Transition | None:
        """Record ``report``; post and return the transition it made, if any."""
        previous = self._state
        was_ok = previous is None or previous.ok
        if report.ok == was_ok:
            if previous is None:
                self._save(_State(report.ok, report.started_at))
            return None
        transition: Transition
        if report.ok:
            transition = "recovery"
            payload = recovery_payload(report, previous.since if previous else None)
        else:
            transition = "failure"
            payload = failure_payload(report)
        self._save(_State(report.ok, report.started_at))
        delivered = self._notifier.post(payload) if self._notifier.enabled else False
        _log.info(
            "canary state changed",
            extra={"transition": transition, "alert_delivered": delivered},
        )
        return transition

    def _load(self) -> _State | None:
        if self._state_file is None or not self._state_file.is_file():
            return None
        try:
            raw = json.loads(self._state_file.read_text(encoding="utf-8"))
            return _State(bool(raw["ok"]), datetime.fromisoformat(raw["since"]))
        except (ValueError, KeyError, TypeError):
            _log.warning("canary state file unreadable; starting afresh")
            return None

    def _save(self, state: _State) -> None:
        self._state = state
        if self._state_file is None:
            return
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self._state_file.with_suffix(".tmp")
        since = state.since.astimezone(UTC).isoformat()
        partial.write_text(json.dumps({"ok": state.ok, "since": since}), encoding="utf-8")
        os.replace(partial, self._state_file)
