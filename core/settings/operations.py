"""Watching Enclave run: logs, metrics and traces, the viability canary and the alert
webhook (each only to hosts inside the deployment).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from core.settings.base import Section

__all__ = [
    "AlertSettings",
    "CanarySettings",
    "TelemetrySettings",
    "local_url_problem",
]


def local_url_problem(
    url: str,
    allowed_hosts: list[str],
    *,
    what: str,
    setting: str,
    base_url_only: bool = False,
) -> str | None:
    """Why ``url`` may not be called (no egress: its host must match ``allowed_hosts``,
    loopback or in-cluster by default), or None when it may."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        return f"{what} must be http(s), got {parts.scheme or 'no'} scheme"
    if parts.username or parts.password:
        return f"{what} must not carry credentials"
    if base_url_only and (parts.query or parts.fragment):
        return f"{what} must be a base URL without query or fragment"
    host = (parts.hostname or "").lower()
    if not host:
        return f"{what} names no host"
    if not any(fnmatchcase(host, pattern.lower()) for pattern in allowed_hosts):
        return (
            f"{what}'s host {host!r} is not in {setting} {allowed_hosts}: "
            "it must stay on this host or inside the cluster"
        )
    return None


class TelemetrySettings(Section):
    """Logs, metrics and traces."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Minimum level logged."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="Log line format: structured JSON or plain text."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL on this host or inside the cluster (e.g. "
        "http://otel-collector.observability.svc:4318); traces are POSTed to "
        "<endpoint>/v1/traces. null: spans are made (trace ids in logs, headers and audit "
        "records) but exported nowhere.",
    )
    otlp_allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1", "*.svc", "*.cluster.local"],
        description="Hosts the OTLP endpoint may name (shell-style patterns): loopback and "
        "in-cluster Services only, so traces never leave the premises.",
    )
    service_name: str = Field(
        default="enclave",
        min_length=1,
        max_length=64,
        description="OpenTelemetry service.name of every Enclave process.",
    )
    trace_sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of requests whose spans are recorded and exported (decided once at "
        "the API; replicas follow it). Trace ids exist for every request either way.",
    )

    def otlp_endpoint_problem(self, url: str) -> str | None:
        """Why ``url`` may not receive traces, or None when it may."""
        return local_url_problem(
            url,
            self.otlp_allowed_hosts,
            what="the OTLP endpoint",
            setting="telemetry.otlp_allowed_hosts",
            base_url_only=True,
        )

    @model_validator(mode="after")
    def _otlp_stays_inside(self) -> TelemetrySettings:
        problem = (
            None if self.otlp_endpoint is None else self.otlp_endpoint_problem(self.otlp_endpoint)
        )
        if problem is not None:
            raise ValueError(problem)
        return self


class CanarySettings(Section):
    """The viability canary: one synthetic conversation through the public API, on a schedule."""

    enabled: bool = Field(
        default=True,
        description="The API replica runs the canary every interval_s with a staff key of its "
        "own (issued once, kept in <data_dir>/secrets/canary-api-key); its results are in that "
        "replica's /metrics. In a cluster with several API replicas use the chart's CronJob "
        "instead (false).",
    )
    interval_s: float = Field(
        default=900.0,
        ge=10,
        description="Seconds between two canary runs in the embedded stack. One run costs about "
        "1.2k tokens of its key's and the tenant's quota (~115k a day at 900 s).",
    )
    api_key_file: Path | None = Field(
        default=None,
        description="File holding the canary's API key (a mounted Secret) for `enclave canary`; "
        "null: the ENCLAVE_CANARY_API_KEY variable.",
    )
    question: str = Field(
        default="Which VPN profile should I use on hotel wifi?",
        min_length=1,
        description="Knowledge-base question the canary asks (from the sample handbook's "
        "evaluation set by default).",
    )
    expected_document: str = Field(
        default="it-vpn",
        min_length=1,
        description="Document id that must be among the answer's sources (enclave.sources).",
    )
    timeout_s: float = Field(
        default=120.0, gt=0, description="Longest one canary run may take, all steps together."
    )


class AlertSettings(Section):
    """Where operational alerts (canary failures and recoveries) are posted."""

    webhook_url: str | None = Field(
        default=None,
        description="Slack-compatible incoming-webhook URL inside the cluster or on this host "
        "(an in-cluster relay, never a public service); null: no alerts are posted. It must "
        "not carry credentials: the settings are hashed and printed.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1", "*.svc", "*.cluster.local"],
        description="Hosts the webhook URL may name (shell-style patterns): loopback and "
        "in-cluster Services only, so an alert never leaves the premises.",
    )
    timeout_s: float = Field(
        default=5.0, gt=0, description="Timeout of one webhook POST (one retry follows a failure)."
    )

    def url_problem(self, url: str) -> str | None:
        """Why ``url`` may not receive alerts, or None when it may."""
        return local_url_problem(
            url, self.allowed_hosts, what="the webhook URL", setting="alerts.allowed_hosts"
        )

    @model_validator(mode="after")
    def _webhook_stays_inside(self) -> AlertSettings:
        problem = None if self.webhook_url is None else self.url_problem(self.webhook_url)
        if problem is not None:
            raise ValueError(problem)
        return self
