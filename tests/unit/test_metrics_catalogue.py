"""The metrics Enclave registers are exactly docs/metrics.md's catalogue: names, types,
label names and the bounded label values; unknown values never make a new series."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from api.security.quotas import MemoryQuotaLedger, QuotaScope
from api.security.store_outage import StoreOutage
from core.metrics import OTHER, EnclaveMetrics
from serving.ops.canary import CanaryMetrics
from tests.alerting.test_alert_rules import Metric, load_catalogue

OWNED_ELSEWHERE = {
    "enclave_quota_alarms_total",
    "enclave_quota_reclaimed_tokens_total",
    "enclave_limits_store_unavailable_total",
    "enclave_canary_runs_total",
    "enclave_canary_success",
    "enclave_canary_last_success_timestamp_seconds",
    "enclave_canary_duration_seconds",
}


def _exported_name(name: str, kind: str) -> str:
    # prometheus_client names a counter's family without the ``_total`` of its samples.
    return f"{name}_total" if kind == "counter" else name


def _registered(registry: CollectorRegistry) -> dict[str, tuple[str, dict[str, set[str]]]]:
    """Name → (type, label → values seen in samples) of every metric on the registry."""
    found: dict[str, tuple[str, dict[str, set[str]]]] = {}
    for family in registry.collect():
        labels: dict[str, set[str]] = {}
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            for label, value in sample.labels.items():
                if label != "le":
                    labels.setdefault(label, set()).add(value)
        found[_exported_name(family.name, family.type)] = (family.type, labels)
    return found


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> EnclaveMetrics:
    return EnclaveMetrics(registry, entity_types=["PERSON", "EMAIL_ADDRESS"])


async def test_enclave_quota_and_canary_metrics_are_exactly_the_catalogue(
    registry: CollectorRegistry, metrics: EnclaveMetrics
) -> None:
    CanaryMetrics(registry)
    ledger = MemoryQuotaLedger(registry=registry)
    StoreOutage("fail_open", registry)
    # Label names show in samples only: make the series that do not start at zero.
    await ledger.reserve([QuotaScope("user", "u1", 100, "day")], 60)
    metrics.request("/v1/models", "GET", 200, 0.01)
    metrics.circuit("llm_primary", 0)

    catalogue = load_catalogue()
    registered = _registered(registry)

    assert set(registered) == set(catalogue)
    for name, row in catalogue.items():
        kind, labels = registered[name]
        assert kind == row.kind, name
        assert set(labels) == set(row.labels), name


def test_bounded_label_values_are_the_catalogue_s(
    registry: CollectorRegistry, metrics: EnclaveMetrics
) -> None:
    """Every label whose values the catalogue lists starts with exactly those series."""
    catalogue: dict[str, Metric] = load_catalogue()
    registered = _registered(registry)
    checked = 0
    for name, row in catalogue.items():
        if name in OWNED_ELSEWHERE or name == "enclave_http_requests_total":
            continue  # quota and canary are theirs; 2xx…5xx is a range, not a list
        for label, values in row.labels.items():
            if values is None:
                continue
            assert registered[name][1].get(label) == set(values), f"{name}{{{label}}}"
            checked += 1
    # stage, engine, decision, outcome, when, result, reason, deployment, kind, outcome
    assert checked == 10


def test_fixed_label_counters_start_at_zero(
    registry: CollectorRegistry, metrics: EnclaveMetrics
) -> None:
    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("enclave_chat_requests_total", decision="block", outcome="ok") == 0.0
    assert value("enclave_rejections_total", reason="overloaded") == 0.0
    assert value("enclave_retrieval_total", result="degraded") == 0.0
    assert value("enclave_audit_write_failures_total") == 0.0
    assert value("enclave_engine_generated_tokens_total", deployment="llm_primary") == 0.0
    assert value("enclave_pii_detections_total", entity_type="PERSON") == 0.0
    assert value("enclave_fallbacks_total", when="before_first_token", reason="circuit_open") == 0

    metrics.chat("block", "ok")
    metrics.rejection("overloaded")
    metrics.audit_write_failure()
    metrics.engine_tokens("llm_primary", 7)
    metrics.pii("PERSON", 2)
    metrics.fallback("before_first_token", "circuit_open")

    assert value("enclave_chat_requests_total", decision="block", outcome="ok") == 1.0
    assert value("enclave_rejections_total", reason="overloaded") == 1.0
    assert value("enclave_audit_write_failures_total") == 1.0
    assert value("enclave_engine_generated_tokens_total", deployment="llm_primary") == 7.0
    assert value("enclave_pii_detections_total", entity_type="PERSON") == 2.0
    assert value("enclave_fallbacks_total", when="before_first_token", reason="circuit_open") == 1


def test_declared_routes_start_at_zero_and_bound_the_route_label(
    registry: CollectorRegistry, metrics: EnclaveMetrics
) -> None:
    metrics.declare_routes([("GET", "/v1/conversations/{conversation_id}"), ("OPTIONS", "/x")])
    labels = {"route": "/v1/conversations/{conversation_id}", "method": "GET"}
    sample = "enclave_http_requests_total"
    assert registry.get_sample_value(sample, {**labels, "status": "5xx"}) == 0.0
    assert registry.get_sample_value(sample, {"route": "/x", "method": "OPTIONS"}) is None

    metrics.request("/v1/conversations/{conversation_id}", "GET", 503, 0.2)
    metrics.request("/v1/conversations/c_123", "GET", 200, 0.1)  # a raw path, by mistake
    metrics.request("unmatched", "GET", 404, 0.001)

    assert registry.get_sample_value(sample, {**labels, "status": "5xx"}) == 1.0
    assert registry.get_sample_value(sample, {**labels, "route": OTHER, "status": "2xx"}) == 1.0
    routes = _registered(registry)[sample][1]["route"]
    assert routes == {"/v1/conversations/{conversation_id}", "unmatched", OTHER}


def test_unknown_label_values_count_as_other(
    registry: CollectorRegistry, metrics: EnclaveMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    before = {name: labels for name, (_, labels) in _registered(registry).items()}
    user_text = "my SSN is 219-09-9999"

    metrics.chat(user_text, "ok")
    metrics.observe_stage("warp_drive", 0.1)
    metrics.ttft("llama.cpp", 0.5)
    metrics.fallback("mid_stream", user_text)
    metrics.retrieval("maybe")
    metrics.pii("SSN; DROP TABLE", 1)
    metrics.pii("US_SSN", 1)  # a real type, but not a configured one
    metrics.rejection("tired")
    metrics.engine_running("llm_tertiary", 3)
    metrics.queue_depth("somewhere", 3)
    metrics.request("/v1/models", "BREW", 999, 0.1)

    after = {name: labels for name, (_, labels) in _registered(registry).items()}
    for name, labels in after.items():
        for label, values in labels.items():
            new = values - before.get(name, {}).get(label, set())
            assert new <= {OTHER, "/v1/models", "other"}, f"{name}{{{label}}}: {new}"
    value = registry.get_sample_value
    assert value("enclave_chat_requests_total", {"decision": OTHER, "outcome": "ok"}) == 1.0
    assert value("enclave_pii_detections_total", {"entity_type": OTHER}) == 2.0
    assert user_text not in caplog.text
    assert "219-09-9999" not in caplog.text


def test_unconfigured_entity_types_are_accepted_when_they_look_like_types(
    registry: CollectorRegistry,
) -> None:
    metrics = EnclaveMetrics(registry)
    metrics.pii("EMPLOYEE_ID", 3)
    metrics.pii("jane@example.com", 1)
    value = registry.get_sample_value
    assert value("enclave_pii_detections_total", {"entity_type": "EMPLOYEE_ID"}) == 3.0
    assert value("enclave_pii_detections_total", {"entity_type": OTHER}) == 1.0


def test_gauges_follow_work_in_flight(registry: CollectorRegistry, metrics: EnclaveMetrics) -> None:
    def running() -> float | None:
        return registry.get_sample_value(
            "enclave_engine_running_requests", {"deployment": "llm_primary"}
        )

    def depth() -> float | None:
        return registry.get_sample_value("enclave_queue_depth", {"deployment": "pii"})

    with metrics.generating("llm_primary"), metrics.in_flight("pii"):
        assert (running(), depth()) == (1.0, 1.0)

        def fail_while_generating() -> None:
            with metrics.generating("llm_primary"):
                assert running() == 2.0
                raise RuntimeError

        with pytest.raises(RuntimeError):
            fail_while_generating()
        assert running() == 1.0
    assert (running(), depth()) == (0.0, 0.0)

    metrics.circuit("llm_primary", 2)
    assert registry.get_sample_value("enclave_circuit_state", {"deployment": "llm_primary"}) == 2
    with pytest.raises(ValueError, match="circuit state"):
        metrics.circuit("llm_primary", 7)


def test_stage_timer_observes_also_a_failing_stage(
    registry: CollectorRegistry, metrics: EnclaveMetrics
) -> None:
    with pytest.raises(TimeoutError), metrics.stage_timer("retrieval"):
        raise TimeoutError
    count = registry.get_sample_value(
        "enclave_stage_duration_seconds_count", {"stage": "retrieval"}
    )
    assert count == 1.0


def test_one_registry_takes_the_metrics_once(
    registry: CollectorRegistry, metrics: EnclaveMetrics
) -> None:
    # A second EnclaveMetrics on the same registry would double-define the catalogue.
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        EnclaveMetrics(registry)
