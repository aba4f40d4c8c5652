"""Prometheus metrics of docs/metrics.md, defined once, on the registry passed in.

:class:`EnclaveMetrics` owns every metric of the catalogue except those registered by their
own modules on the same registry: ``enclave_quota_alarms_total``
(``api.security.quotas.AlarmEmitter``), ``enclave_quota_reclaimed_tokens_total``
(``api.security.quota_leases``), ``enclave_limits_store_unavailable_total``
(``api.security.store_outage``) and the ``enclave_canary_*`` metrics. An API replica
exports the canary's metrics with :class:`CanaryResults`, from the runs recorded in the SQL
store (``core.db.canary_schema``), so that every replica shows the result of a canary that
ran anywhere (a Kubernetes CronJob, the embedded stack's schedule);
``serving.ops.canary.CanaryMetrics`` is the same catalogue for the one process that ran the
canary (``enclave canary --metrics-file``). Pass them the same registry and ``/metrics``
serves the whole catalogue; ``tests/unit/test_metrics_catalogue.py`` checks that it is
exactly that.

Label values are bounded sets: a value outside its set is counted as ``other`` (and logged
once, without the value), so a bug or a hostile input can never create a new series. Counters
whose label sets are fixed start at zero, so ``increase()`` and ``rate()`` see the first event.
Prompt versions (a ``prompt_version`` label) are minted by admins, not users: each one's
series start at zero when it is first seen, and a per-process cap bounds them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from core.db import Database

__all__ = [
    "ANSWER_OUTCOMES",
    "CANARY_DURATION_BUCKETS",
    "CIRCUIT_STATES",
    "DECISIONS",
    "DEPLOYMENTS",
    "ENGINES",
    "ENGINE_DEPLOYMENTS",
    "FALLBACK_WHEN",
    "HTTP_METHODS",
    "NO_PROMPT_VERSION",
    "OTHER",
    "OUTCOMES",
    "QUALITY_KINDS",
    "REJECTION_REASONS",
    "RETRIEVAL_RESULTS",
    "STAGES",
    "STATUS_CLASSES",
    "UNMATCHED",
    "CanaryResults",
    "CanarySnapshot",
    "EnclaveMetrics",
]

_log = logging.getLogger("enclave.metrics")

OTHER: Final = "other"
"""Label value of anything outside a label's bounded set."""
UNMATCHED: Final = "unmatched"
"""Route label of requests no route matched (404, 405): never the raw path."""

STAGES: Final = (
    "auth",
    "guards",
    "retrieval",
    "prompt",
    "generation",
    "output_scan",
    "persistence",
)
ENGINES: Final = ("vllm", "transformers")
DECISIONS: Final = ("answer", "answer_without_documents", "refuse", "escalate", "block")
OUTCOMES: Final = ("ok", "error")
FALLBACK_WHEN: Final = ("before_first_token", "mid_stream")
RETRIEVAL_RESULTS: Final = ("ok", "empty", "degraded", "skipped")
REJECTION_REASONS: Final = ("rate_limited", "quota", "overloaded", "unauthenticated", "forbidden")
ENGINE_DEPLOYMENTS: Final = ("llm_primary", "llm_fallback")
DEPLOYMENTS: Final = ("api", "llm_primary", "llm_fallback", "pii", "guard", "retriever")
STATUS_CLASSES: Final = ("2xx", "3xx", "4xx", "5xx")
HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
CIRCUIT_STATES: Final = (0, 1, 2)
QUALITY_KINDS: Final = ("thumbs_up", "thumbs_down", "regenerate", "copy", "abandoned", "rephrase")
ANSWER_OUTCOMES: Final = ("answered", "refused", "fallback", "degraded_retrieval")
NO_PROMPT_VERSION: Final = "none"
"""``prompt_version`` label of answers (and signals on answers) with no recorded version."""

# Fallback reasons are error class names (or "circuit_open"): names from our code, bounded
# by it; these start at zero because the fallback alert divides rates.
_KNOWN_FALLBACKS: Final = (
    ("before_first_token", "circuit_open"),
    ("before_first_token", "FirstTokenTimeout"),
    ("mid_stream", "StallTimeout"),
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ENTITY_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,47}")
_ROUTE_TEMPLATE_MAX = 200
# Prompt versions are minted by admins, not users: bounded in practice, and capped per
# process so that a bug cannot grow the series without end.
_PROMPT_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,79}")
_MAX_PROMPT_VERSIONS = 200

_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_STAGE_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)


class EnclaveMetrics:
    """Every metric of the catalogue that Enclave's own code records, with typed helpers.

    ``entity_types`` (the configured PII entity types) bounds and pre-creates
    ``enclave_pii_detections_total``; without it any upper-case identifier is accepted.
    """

    def __init__(
        self, registry: CollectorRegistry, *, entity_types: Iterable[str] | None = None
    ) -> None:
        self.registry = registry
        self._warned: set[tuple[str, str]] = set()
        self._routes: set[str] = set()
        self._entity_types = None if entity_types is None else frozenset(entity_types)

        self._http_requests = Counter(
            "enclave_http_requests_total",
            "Requests answered by the API.",
            ["route", "method", "status"],
            registry=registry,
        )
        self._http_duration = Histogram(
            "enclave_http_request_duration_seconds",
            "Time to the response's first byte.",
            ["route", "method"],
            buckets=_HTTP_BUCKETS,
            registry=registry,
        )
        self._stage = Histogram(
            "enclave_stage_duration_seconds",
            "Time spent per pipeline stage.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=registry,
        )
        self._ttft = Histogram(
            "enclave_ttft_seconds",
            "Time to first token as the client sees it.",
            ["engine"],
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self._output_tokens = Counter(
            "enclave_output_tokens_total",
            "Completion tokens streamed to clients.",
            ["engine"],
            registry=registry,
        )
        self._chat = Counter(
            "enclave_chat_requests_total",
            "Chat requests by guard decision.",
            ["decision", "outcome"],
            registry=registry,
        )
        self._fallbacks = Counter(
            "enclave_fallbacks_total",
            "Generations moved to the fallback engine.",
            ["when", "reason"],
            registry=registry,
        )
        self._retrieval = Counter(
            "enclave_retrieval_total",
            "Retrieval outcomes per chat.",
            ["result"],
            registry=registry,
        )
        self._pii = Counter(
            "enclave_pii_detections_total",
            "PII values replaced by placeholders.",
            ["entity_type"],
            registry=registry,
        )
        self._rejections = Counter(
            "enclave_rejections_total",
            "Requests refused before any work.",
            ["reason"],
            registry=registry,
        )
        self._queue_depth = Gauge(
            "enclave_queue_depth",
            "Requests waiting or running in a deployment.",
            ["deployment"],
            registry=registry,
        )
        self._engine_running = Gauge(
            "enclave_engine_running_requests",
            "Sequences an engine is generating.",
            ["deployment"],
            registry=registry,
        )
        self._engine_tokens = Counter(
            "enclave_engine_generated_tokens_total",
            "Tokens an engine produced (stall detection).",
            ["deployment"],
            registry=registry,
        )
        self._circuit = Gauge(
            "enclave_circuit_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["deployment"],
            registry=registry,
        )
        self._audit_failures = Counter(
            "enclave_audit_write_failures_total",
            "Audit records that could not be written.",
            registry=registry,
        )
        self._quality_events = Counter(
            "enclave_quality_events_total",
            "Quality signals on answers (ratings and implicit signals).",
            ["kind", "prompt_version"],
            registry=registry,
        )
        self._answers = Counter(
            "enclave_answers_total",
            "Answers per prompt version, once per outcome that applies.",
            ["prompt_version", "outcome"],
            registry=registry,
        )
        self._prompt_versions: set[str] = set()
        self._precreate()

    def _precreate(self) -> None:
        for stage in STAGES:
            self._stage.labels(stage=stage)
        for engine in ENGINES:
            self._ttft.labels(engine=engine)
            self._output_tokens.labels(engine=engine)
        for decision in DECISIONS:
            for outcome in OUTCOMES:
                self._chat.labels(decision=decision, outcome=outcome)
        for when, reason in _KNOWN_FALLBACKS:
            self._fallbacks.labels(when=when, reason=reason)
        for result in RETRIEVAL_RESULTS:
            self._retrieval.labels(result=result)
        for reason in REJECTION_REASONS:
            self._rejections.labels(reason=reason)
        for entity_type in sorted(self._entity_types or ()):
            self._pii.labels(entity_type=entity_type)
        for deployment in DEPLOYMENTS:
            self._queue_depth.labels(deployment=deployment)
        for deployment in ENGINE_DEPLOYMENTS:
            self._engine_running.labels(deployment=deployment)
            self._engine_tokens.labels(deployment=deployment)
        self._prompt_version(NO_PROMPT_VERSION)

    # -- label bounding -------------------------------------------------------------------

    def _bounded(self, metric: str, label: str, value: str, allowed: Iterable[str]) -> str:
        if value in allowed:
            return value
        return self._other(metric, label)

    def _other(self, metric: str, label: str) -> str:
        if (metric, label) not in self._warned:
            self._warned.add((metric, label))
            # The value itself is not logged: it may be anything, user text included.
            _log.warning(
                "unknown metric label value counted as 'other'",
                extra={"metric": metric, "label": label},
            )
        return OTHER

    def bounded_route(self, route: str) -> str:
        """The route label for a matched template (declared ones only, once any are)."""
        if route == UNMATCHED:
            return route
        if self._routes:
            known = route in self._routes
            return route if known else self._other("enclave_http_requests_total", "route")
        if route.startswith("/") and len(route) <= _ROUTE_TEMPLATE_MAX:
            return route
        return self._other("enclave_http_requests_total", "route")

    @staticmethod
    def status_class(status: int) -> str:
        """``2xx`` … ``5xx`` (``other`` outside them)."""
        label = f"{status // 100}xx"
        return label if label in STATUS_CLASSES else OTHER

    # -- HTTP -----------------------------------------------------------------------------

    def declare_routes(self, routes: Iterable[tuple[str, str]]) -> None:
        """The app's ``(method, path template)`` pairs: from now on the only route labels
        (besides ``unmatched``), each counter starting at zero for 2xx, 4xx and 5xx."""
        for method, route in routes:
            verb = method.upper()
            if verb not in HTTP_METHODS or verb in {"HEAD", "OPTIONS"}:
                continue
            self._routes.add(route)
            for status in ("2xx", "4xx", "5xx"):
                self._http_requests.labels(route=route, method=verb, status=status)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered HTTP request: its route template, method, status and time to the
        first byte."""
        method = self._bounded("enclave_http_requests_total", "method", method, HTTP_METHODS)
        route = self.bounded_route(route)
        status_class = self.status_class(status)
        self._http_requests.labels(route=route, method=method, status=status_class).inc()
        self._http_duration.labels(route=route, method=method).observe(max(0.0, seconds))

    # -- the chat pipeline ----------------------------------------------------------------

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Time spent in one pipeline stage."""
        stage = self._bounded("enclave_stage_duration_seconds", "stage", stage, STAGES)
        self._stage.labels(stage=stage).observe(max(0.0, seconds))

    @contextmanager
    def stage_timer(self, stage: str) -> Iterator[None]:
        """Observe the block's duration as ``stage`` (also when it raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe_stage(stage, time.perf_counter() - started)

    def ttft(self, engine: str, seconds: float) -> None:
        """Time to first token as the client saw it, per engine."""
        engine = self._bounded("enclave_ttft_seconds", "engine", engine, ENGINES)
        self._ttft.labels(engine=engine).observe(max(0.0, seconds))

    def output_tokens(self, engine: str, n: int) -> None:
        """Completion tokens streamed to a client."""
        if n <= 0:
            return
        engine = self._bounded("enclave_output_tokens_total", "engine", engine, ENGINES)
        self._output_tokens.labels(engine=engine).inc(n)

    def chat(self, decision: str, outcome: str) -> None:
        """One chat request, by guard decision and whether it ended well."""
        metric = "enclave_chat_requests_total"
        decision = self._bounded(metric, "decision", decision, DECISIONS)
        outcome = self._bounded(metric, "outcome", outcome, OUTCOMES)
        self._chat.labels(decision=decision, outcome=outcome).inc()

    def fallback(self, when: str, reason: str) -> None:
        """A generation moved to the fallback engine (``reason``: the error class name)."""
        metric = "enclave_fallbacks_total"
        when = self._bounded(metric, "when", when, FALLBACK_WHEN)
        if not _IDENTIFIER.fullmatch(reason):
            reason = self._other(metric, "reason")
        self._fallbacks.labels(when=when, reason=reason).inc()

    def retrieval(self, result: str) -> None:
        """One retrieval outcome."""
        result = self._bounded("enclave_retrieval_total", "result", result, RETRIEVAL_RESULTS)
        self._retrieval.labels(result=result).inc()

    def pii(self, entity_type: str, n: int = 1) -> None:
        """``n`` values of one PII type replaced by placeholders."""
        if n <= 0:
            return
        metric = "enclave_pii_detections_total"
        if self._entity_types is not None:
            entity_type = self._bounded(metric, "entity_type", entity_type, self._entity_types)
        elif not _ENTITY_TYPE.fullmatch(entity_type):
            entity_type = self._other(metric, "entity_type")
        self._pii.labels(entity_type=entity_type).inc(n)

    def rejection(self, reason: str) -> None:
        """A request refused before any work."""
        reason = self._bounded("enclave_rejections_total", "reason", reason, REJECTION_REASONS)
        self._rejections.labels(reason=reason).inc()

    def audit_write_failure(self) -> None:
        """An audit record that could not be written."""
        self._audit_failures.inc()

    # -- quality --------------------------------------------------------------------------

    def _prompt_version(
        self, version: str | None, metric: str = "enclave_quality_events_total"
    ) -> str:
        """The label of a prompt version; its series of every kind and outcome start at zero
        when it is first seen, so ratios such as up/(up+down) see the first event."""
        if version is None:
            version = NO_PROMPT_VERSION
        if version in self._prompt_versions:
            return version
        if (
            not _PROMPT_VERSION.fullmatch(version)
            or len(self._prompt_versions) >= _MAX_PROMPT_VERSIONS
        ):
            return self._other(metric, "prompt_version")
        self._prompt_versions.add(version)
        for kind in QUALITY_KINDS:
            self._quality_events.labels(kind=kind, prompt_version=version)
        for outcome in ANSWER_OUTCOMES:
            self._answers.labels(prompt_version=version, outcome=outcome)
        return version

    def declare_prompt_version(self, version: str) -> None:
        """Start a prompt version's quality and answer series at zero (e.g. on activation)."""
        self._prompt_version(version)

    def quality_event(self, kind: str, prompt_version: str | None) -> None:
        """One quality signal on an answer produced under ``prompt_version``."""
        kind = self._bounded("enclave_quality_events_total", "kind", kind, QUALITY_KINDS)
        label = self._prompt_version(prompt_version)
        self._quality_events.labels(kind=kind, prompt_version=label).inc()

    def answer(self, prompt_version: str | None, outcome: str) -> None:
        """One answer's ``outcome``: call with ``answered`` for every answer, and once more
        for each of ``refused``, ``fallback``, ``degraded_retrieval`` that applies."""
        metric = "enclave_answers_total"
        outcome = self._bounded(metric, "outcome", outcome, ANSWER_OUTCOMES)
        label = self._prompt_version(prompt_version, metric)
        self._answers.labels(prompt_version=label, outcome=outcome).inc()

    # -- deployments and engines ----------------------------------------------------------

    def _deployment(self, metric: str, deployment: str) -> str:
        return self._bounded(metric, "deployment", deployment, DEPLOYMENTS)

    def queue_depth(self, deployment: str, n: int) -> None:
        """Requests waiting or running in a deployment (as one process sees them)."""
        deployment = self._deployment("enclave_queue_depth", deployment)
        self._queue_depth.labels(deployment=deployment).set(n)

    @contextmanager
    def in_flight(self, deployment: str) -> Iterator[None]:
        """Count the block as one request in ``deployment``'s queue depth."""
        gauge = self._queue_depth.labels(
            deployment=self._deployment("enclave_queue_depth", deployment)
        )
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def engine_running(self, deployment: str, n: int) -> None:
        """Sequences an engine is generating."""
        deployment = self._bounded(
            "enclave_engine_running_requests", "deployment", deployment, ENGINE_DEPLOYMENTS
        )
        self._engine_running.labels(deployment=deployment).set(n)

    @contextmanager
    def generating(self, deployment: str) -> Iterator[None]:
        """Count the block as one sequence ``deployment``'s engine is generating."""
        deployment = self._bounded(
            "enclave_engine_running_requests", "deployment", deployment, ENGINE_DEPLOYMENTS
        )
        gauge = self._engine_running.labels(deployment=deployment)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def engine_tokens(self, deployment: str, n: int) -> None:
        """Tokens an engine produced."""
        if n <= 0:
            return
        deployment = self._bounded(
            "enclave_engine_generated_tokens_total", "deployment", deployment, ENGINE_DEPLOYMENTS
        )
        self._engine_tokens.labels(deployment=deployment).inc(n)

    def circuit(self, deployment: str, state: int) -> None:
        """A circuit breaker's state: 0 closed, 1 half-open, 2 open."""
        if state not in CIRCUIT_STATES:
            msg = f"circuit state must be one of {CIRCUIT_STATES}, got {state!r}"
            raise ValueError(msg)
        deployment = self._deployment("enclave_circuit_state", deployment)
        self._circuit.labels(deployment=deployment).set(int(state))


# -- the canary's results, from the SQL store ------------------------------------------------

CANARY_DURATION_BUCKETS: Final = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""Buckets of ``enclave_canary_duration_seconds`` (also ``serving.ops.canary.CanaryMetrics``)."""


@dataclass(slots=True)
class CanarySnapshot:
    """What the ``enclave_canary_*`` metrics show: the newest run, the newest pass, and the
    runs counted since this process started exporting (a counter must never go down, and
    the store keeps only the newest runs, so counting starts with this process)."""

    last_ok: bool | None = None
    last_success_at: datetime | None = None
    runs_ok: int = 0
    runs_failed: int = 0
    duration_sum: float = 0.0
    bucket_counts: list[int] | None = None
    last_id: int = 0

    def count(self, ok: bool, duration_s: float) -> None:
        """One more run in ``runs_total`` and the duration histogram."""
        if ok:
            self.runs_ok += 1
        else:
            self.runs_failed += 1
        counts = self.bucket_counts or [0] * (len(CANARY_DURATION_BUCKETS) + 1)
        slot = next(
            (i for i, bound in enumerate(CANARY_DURATION_BUCKETS) if duration_s <= bound),
            len(CANARY_DURATION_BUCKETS),
        )
        counts[slot] += 1
        self.bucket_counts = counts
        self.duration_sum += duration_s

    def families(self) -> list[Metric]:
        """The metric families of docs/metrics.md. The two gauges are absent until a run
        (a passing run) is known, so ``absent()`` in the stale-canary alert sees a canary
        that never reported, and a fresh replica never reports a failure that did not
        happen."""
        found: list[Metric] = []
        if self.last_ok is not None:
            success = GaugeMetricFamily(
                "enclave_canary_success", "1 if the last canary run passed, else 0."
            )
            success.add_metric([], 1.0 if self.last_ok else 0.0)
            found.append(success)
        if self.last_success_at is not None:
            stamp = GaugeMetricFamily(
                "enclave_canary_last_success_timestamp_seconds",
                "When the canary last passed (Unix time).",
            )
            stamp.add_metric([], self.last_success_at.timestamp())
            found.append(stamp)
        runs = CounterMetricFamily(
            "enclave_canary_runs_total", "Viability-canary runs.", labels=["result"]
        )
        runs.add_metric(["ok"], float(self.runs_ok))
        runs.add_metric(["failed"], float(self.runs_failed))
        found.append(runs)
        counts = self.bucket_counts or [0] * (len(CANARY_DURATION_BUCKETS) + 1)
        cumulative: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*CANARY_DURATION_BUCKETS, float("inf")), counts, strict=True):
            total += n
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        duration = HistogramMetricFamily(
            "enclave_canary_duration_seconds", "One canary conversation, end to end."
        )
        duration.add_metric([], cumulative, sum_value=self.duration_sum)
        found.append(duration)
        return found


class CanaryResults(Collector):
    """The ``enclave_canary_*`` metrics of every API replica, read from the canary runs in
    the SQL store (``core.db.canary_schema``), wherever the canary ran.

    Call :meth:`refresh` before each scrape (``api.routes.metrics.metrics_route`` does): it
    reads the store at most every ``refresh_s`` seconds and gives up after ``timeout_s``;
    a database that fails or hangs leaves the last values in place (logged), so ``/metrics``
    keeps answering, and a canary result that stops changing trips the stale-canary alert.
    """

    def __init__(
        self,
        database: Database,
        registry: CollectorRegistry | None = None,
        *,
        refresh_s: float = 5.0,
        timeout_s: float = 2.0,
    ) -> None:
        self._database = database
        self._refresh_s = refresh_s
        self._timeout_s = timeout_s
        self._snapshot = CanarySnapshot()
        self._since = time.time()
        self._loaded = False
        self._refreshed_at: float | None = None
        self._lock = asyncio.Lock()
        self._failing = False
        if registry is not None:
            registry.register(self)

    @property
    def snapshot(self) -> CanarySnapshot:
        """The values exported now."""
        return self._snapshot

    def collect(self) -> Iterable[Metric]:
        """The canary's metric families (Prometheus' collector interface)."""
        return self._snapshot.families()

    async def refresh(self) -> None:
        """Read the runs recorded since the last refresh, unless one ran within
        ``refresh_s``; never raises."""
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():  # a concurrent scrape refreshed meanwhile
                return
            try:
                await asyncio.wait_for(self._load(), timeout=self._timeout_s)
            except Exception as exc:  # /metrics must answer while the database does not
                if not self._failing:
                    _log.warning(
                        "canary results not refreshed; exporting the last ones",
                        extra={"error": type(exc).__name__},
                    )
                self._failing = True
            else:
                if self._failing:
                    _log.info("canary results refreshed again")
                self._failing = False
            finally:
                self._refreshed_at = time.monotonic()

    def _fresh(self) -> bool:
        return (
            self._refreshed_at is not None
            and time.monotonic() - self._refreshed_at < self._refresh_s
        )

    async def _load(self) -> None:
        from core.db.canary_schema import latest_canary_success, read_canary_runs

        async with self._database.reading() as connection:
            rows = await read_canary_runs(connection, after_id=self._snapshot.last_id)
            success = await latest_canary_success(connection)
        snapshot = self._snapshot
        for row in rows:
            # Runs that finished before this process started were counted by the replicas
            # that ran then: count only the newer ones, so a restart adds no phantom runs.
            if self._loaded or row.finished_at.timestamp() >= self._since:
                snapshot.count(row.ok, row.duration_s)
            snapshot.last_ok = row.ok
            snapshot.last_id = row.id
        snapshot.last_success_at = success
        self._loaded = True
