"""ServiceMonitor, PrometheusRule and Grafana dashboard: behind flags, from the repo's files."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.helm.conftest import ALERTS, CHART, DASHBOARD, Rendered

MONITORING = ["ci/cpu-values.yaml"]


def test_monitoring_is_off_by_default(default: Rendered) -> None:
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert not default.of_kind(kind)
    names = [c["metadata"]["name"] for c in default.of_kind("ConfigMap")]
    assert not [n for n in names if n.endswith("-dashboard")]


def test_service_monitor_scrapes_every_ray_pod(render: Callable[..., Rendered]) -> None:
    rendered = render(MONITORING)
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    # Enclave's metrics from the API replica on Serve's port, Ray's from its exporter.
    assert set(endpoints) == {"serve", "metrics"}
    assert all(e["path"] == "/metrics" for e in endpoints.values())
    (service,) = [
        s
        for s in rendered.of_kind("Service")
        if s["metadata"]["labels"].items() >= monitor["spec"]["selector"]["matchLabels"].items()
    ]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"]["enclave.dev/ray-node"] == "true"
    assert {p["name"] for p in service["spec"]["ports"]} == {"metrics", "serve"}
    serve = yaml.safe_load(rendered.one("RayService")["spec"]["serveConfigV2"])
    (api,) = [d for d in serve["applications"][0]["deployments"] if d["name"] == "api"]
    assert api["max_replicas_per_node"] == 1  # one API replica per scraped pod


def test_prometheus_rule_embeds_the_alert_rules_file(
    render: Callable[..., Rendered], chart_dir: Path
) -> None:
    rule = render(MONITORING).one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    source = yaml.safe_load((chart_dir / ALERTS).read_text(encoding="utf-8"))
    assert rule["spec"] == {"groups": source["groups"]}
    for group in rule["spec"]["groups"]:
        assert group["name"]
        assert group["rules"]
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item)
            assert item["expr"]


def test_promtool_accepts_the_rendered_rules(
    render: Callable[..., Rendered], tmp_path: Path
) -> None:
    if not (CHART / ALERTS).is_file():
        pytest.skip(f"{ALERTS} does not exist yet (another change adds it)")
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run `make tools`.")
    spec = render(MONITORING).one("PrometheusRule")["spec"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_config_map_carries_the_dashboard_file(
    render: Callable[..., Rendered], chart_dir: Path
) -> None:
    (dashboard,) = [
        c
        for c in render(MONITORING).of_kind("ConfigMap")
        if c["metadata"]["name"].endswith("-dashboard")
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    content = dashboard["data"]["enclave-dashboard.json"]
    assert json.loads(content) == json.loads((chart_dir / DASHBOARD).read_text(encoding="utf-8"))
