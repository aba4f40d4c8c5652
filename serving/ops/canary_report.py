"""The canary's report (one run, step by step) and its Prometheus metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from core.metrics import CANARY_DURATION_BUCKETS

__all__ = ["STEPS", "CanaryMetrics", "CanaryReport", "CanaryStep", "StepStatus"]

STEPS = ("auth", "guards", "retrieval", "generation", "output_scan")
StepStatus = Literal["ok", "failed", "skipped"]


@dataclass(slots=True)
class CanaryStep:
    """One checked step: its outcome, how long it took, and why it failed."""

    name: str
    status: StepStatus
    duration_s: float = 0.0
    message: str = ""
    request_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "status": self.status,
            "duration_s": round(self.duration_s, 3),
            "message": self.message,
            "request_id": self.request_id,
            "detail": self.detail,
        }


@dataclass(slots=True)
class CanaryReport:
    """The outcome of one canary run."""

    base_url: str
    started_at: datetime
    duration_s: float
    steps: list[CanaryStep]

    @property
    def ok(self) -> bool:
        """Whether every step passed."""
        return bool(self.steps) and all(step.status == "ok" for step in self.steps)

    @property
    def failed_step(self) -> CanaryStep | None:
        """The first step that failed, if any."""
        return next((step for step in self.steps if step.status == "failed"), None)

    def summary(self) -> str:
        """One line for logs and alerts."""
        failed = self.failed_step
        if failed is None:
            return f"canary passed in {self.duration_s:.1f} s"
        where = f" (request id {failed.request_id})" if failed.request_id else ""
        return f"canary failed at step {failed.name}: {failed.message}{where}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``enclave canary --json``)."""
        failed = self.failed_step
        return {
            "ok": self.ok,
            "result": "ok" if self.ok else "failed",
            "base_url": self.base_url,
            "started_at": self.started_at.isoformat(),
            "duration_s": round(self.duration_s, 3),
            "failed_step": failed.name if failed else None,
            "request_id": failed.request_id if failed else None,
            "steps": [step.as_dict() for step in self.steps],
        }


class CanaryMetrics:
    """The canary's Prometheus metrics (docs/metrics.md), on the registry passed in, for the
    process that ran it (``enclave canary --metrics-file``, tests). API replicas export the
    runs recorded in the SQL store instead (``core.metrics.CanaryResults``)."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.runs = Counter(
            "enclave_canary_runs_total", "Viability-canary runs.", ["result"], registry=registry
        )
        self.success = Gauge(
            "enclave_canary_success", "1 if the last canary run passed, else 0.", registry=registry
        )
        self.last_success = Gauge(
            "enclave_canary_last_success_timestamp_seconds",
            "When the canary last passed (Unix time).",
            registry=registry,
        )
        self.duration = Histogram(
            "enclave_canary_duration_seconds",
            "One canary conversation, end to end.",
            buckets=CANARY_DURATION_BUCKETS,
            registry=registry,
        )
        for result in ("ok", "failed"):
            self.runs.labels(result=result)

    def record(self, report: CanaryReport) -> None:
        """Count one run and update the gauges."""
        self.runs.labels(result="ok" if report.ok else "failed").inc()
        self.success.set(1 if report.ok else 0)
        self.duration.observe(report.duration_s)
        if report.ok:
            self.last_success.set(report.started_at.timestamp() + report.duration_s)
