"""Alert rules, their promtool tests, the dashboard and the runbooks agree with each other
and with the metrics catalogue (docs/metrics.md)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "helm" / "enclave" / "files" / "prometheus"
RULES = PROMETHEUS_DIR / "enclave-alerts.yaml"
RULE_TESTS = PROMETHEUS_DIR / "enclave-alerts.test.yaml"
GRAFANA_DIR = ROOT / "helm" / "enclave" / "files" / "grafana"
DASHBOARD = GRAFANA_DIR / "enclave-dashboard.json"
CATALOGUE = ROOT / "docs" / "metrics.md"
RUNBOOKS = ROOT / "docs" / "runbooks.md"

SEVERITIES = {"page", "ticket"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
DATASOURCE_UID = "${datasource}"
# Panel types built into Grafana: the dashboard must not need a plugin.
CORE_PANEL_TYPES = {"row", "timeseries", "stat", "state-timeline", "gauge", "bargauge", "table"}

ENCLAVE_NAME = re.compile(r"\benclave_[a-z_]+")
RAY_SERVE_NAME = re.compile(r"\bray_serve_[a-z_]+")
SELECTOR = re.compile(r"\b(enclave_[a-z_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
CATALOGUE_ROW = re.compile(r"^\|\s*`(enclave_[a-z_]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|", re.MULTILINE)
CATALOGUE_LABEL = re.compile(r"`([a-z_]+)`\s*(?:\(([^)]*)\))?")


@dataclass(frozen=True)
class Metric:
    """One catalogue row: the metric's type and its labels (with their values where the
    catalogue lists every one of them, else None)."""

    kind: str
    labels: dict[str, frozenset[str] | None]


def load_catalogue() -> dict[str, Metric]:
    """Parse docs/metrics.md's table."""
    catalogue: dict[str, Metric] = {}
    for name, kind, labels_cell in CATALOGUE_ROW.findall(CATALOGUE.read_text(encoding="utf-8")):
        labels: dict[str, frozenset[str] | None] = {}
        for label, values in CATALOGUE_LABEL.findall(labels_cell):
            # "(`2xx`…`5xx`)" is a range and "(error class name)" a description: not a list.
            listed = re.findall(r"`([^`]+)`", values)
            labels[label] = frozenset(listed) if listed and "…" not in values else None
        catalogue[name] = Metric(kind=kind, labels=labels)
    assert catalogue, f"no metric rows found in {CATALOGUE}"
    return catalogue


def load_rules() -> list[dict[str, Any]]:
    """Every rule of the rules file."""
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in load_rules() if "alert" in rule]


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def dashboard_exprs() -> list[str]:
    dashboard = load_dashboard()
    exprs = [
        target["expr"]
        for panel in walk_panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    exprs += [
        str(variable.get("query", ""))
        for variable in dashboard.get("templating", {}).get("list", [])
        if variable.get("type") == "query"
    ]
    return exprs


def rule_exprs() -> list[str]:
    return [rule["expr"] for rule in load_rules()]


def resolve(name: str, catalogue: dict[str, Metric]) -> str | None:
    """The catalogue name a series name belongs to (histograms export three series)."""
    if name in catalogue:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and catalogue.get(base, Metric("", {})).kind == "histogram":
            return base
    return None


def problems_in(expr: str, catalogue: dict[str, Metric]) -> list[str]:
    """Metric names, matcher labels and listed label values the catalogue does not know."""
    problems: list[str] = []
    used: set[str] = set()
    for name in ENCLAVE_NAME.findall(expr):
        base = resolve(name, catalogue)
        if base is None:
            problems.append(f"metric {name} is not in docs/metrics.md")
        else:
            used.add(base)
    for name, matchers in SELECTOR.findall(expr):
        base = resolve(name, catalogue)
        if base is None:
            continue
        metric = catalogue[base]
        for label, op, value in MATCHER.findall(matchers):
            if label == "le" and name.endswith("_bucket"):
                continue
            if label not in metric.labels:
                problems.append(f"{name} has no label {label!r}")
                continue
            allowed = metric.labels[label]
            if allowed is None:
                continue
            # Check literal values, and regexes that are plain alternations of literals.
            if op in {"=", "!="} or re.fullmatch(r"[\w|]+", value):
                problems += [
                    f"{name}{{{label}}} has no value {one!r} (catalogue: {sorted(allowed)})"
                    for one in value.split("|")
                    if one not in allowed
                ]
    if used:
        known = {"le"}.union(*(catalogue[name].labels for name in used))
        for group in GROUPING.findall(expr):
            problems += [
                f"grouping label {label!r} belongs to none of {sorted(used)}"
                for label in (part.strip() for part in group.split(","))
                if label and label not in known
            ]
    return problems


# --- promtool ---------------------------------------------------------------------------


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: run `make tools` (it installs Debian's prometheus "
            "package, which carries promtool)"
        )
    return path


def run_promtool(*args: str) -> None:
    result = subprocess.run(
        [promtool(), *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    )


def test_promtool_check_rules() -> None:
    run_promtool("check", "rules", RULES.name)


def test_promtool_test_rules() -> None:
    run_promtool("test", "rules", RULE_TESTS.name)


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    # promtool parses PromQL only inside rules: check each panel query as a recording rule,
    # with Grafana's interval variables replaced by durations.
    exprs = [
        expr.replace("$__rate_interval", "2m").replace("$__range", "1h")
        for expr in dashboard_exprs()
    ]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    run_promtool("check", "rules", str(path))


# --- rules ------------------------------------------------------------------------------


def test_every_alert_has_a_firing_and_a_silent_test_case() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    cases = [case for group in tests["tests"] for case in group.get("alert_rule_test", [])]
    names = set(alert_names())
    # promtool passes a silent case for an alert that does not exist: catch typos here.
    unknown = {case["alertname"] for case in cases} - names
    assert not unknown, f"test cases for alerts the rules do not define: {sorted(unknown)}"
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert not names - firing, f"alerts with no firing test case: {sorted(names - firing)}"
    assert not names - silent, f"alerts with no non-firing test case: {sorted(names - silent)}"


def test_alerts_have_severity_annotations_and_runbooks() -> None:
    anchors = runbook_anchors()
    names = alert_names()
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in load_rules():
        if "alert" not in rule:
            continue
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert str(annotations.get(key, "")).strip(), f"{name}: no {key} annotation"
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page.endswith("docs/runbooks.md"), f"{name}: runbook_url {page!r}"
        assert anchor in anchors, f"{name}: docs/runbooks.md has no section #{anchor}"


def test_every_alert_like_runbook_section_is_an_alert() -> None:
    sections = {anchor for anchor in runbook_anchors() if anchor.startswith("enclave")}
    alerts = {name.lower() for name in alert_names()}
    assert sections == alerts, (
        f"runbook sections without an alert: {sorted(sections - alerts)}; "
        f"alerts without a section: {sorted(alerts - sections)}"
    )


def test_rules_hold_no_template_syntax() -> None:
    # The chart embeds the file verbatim; template braces would be read by Helm or
    # Alertmanager differently from what promtool tested.
    assert "{{" not in RULES.read_text(encoding="utf-8")


def runbook_anchors() -> set[str]:
    """GitHub's anchors for the headings of docs/runbooks.md."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOKS.read_text(encoding="utf-8"), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


# --- catalogue --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "exprs"),
    [("rules", rule_exprs), ("dashboard", dashboard_exprs)],
    ids=["rules", "dashboard"],
)
def test_queries_use_only_catalogued_metrics_and_labels(source: str, exprs: Any) -> None:
    catalogue = load_catalogue()
    found = exprs()
    assert any(ENCLAVE_NAME.search(expr) for expr in found), f"no Enclave metric in {source}"
    problems = [f"{expr.strip()}\n    {p}" for expr in found for p in problems_in(expr, catalogue)]
    assert not problems, f"{source}: " + "\n".join(problems)


def test_catalogue_check_catches_unknown_names_labels_and_values() -> None:
    catalogue = load_catalogue()
    assert problems_in("rate(enclave_ttft_seconds_bucket[5m])", catalogue) == []
    assert problems_in("rate(enclave_ttft_second_bucket[5m])", catalogue)
    assert problems_in('enclave_http_requests_total{code="5xx"}', catalogue)
    assert problems_in('enclave_quota_alarms_total{level="90"}', catalogue)
    assert problems_in('enclave_quota_alarms_total{level=~"80|95"}', catalogue)
    assert problems_in("sum by (deploymnet) (enclave_queue_depth)", catalogue)
    # A counter's name with a histogram suffix is not a series it exports.
    assert problems_in("enclave_output_tokens_total_count", catalogue)


def test_ray_serve_metrics_exist_in_ray() -> None:
    names = {name for expr in dashboard_exprs() for name in RAY_SERVE_NAME.findall(expr)}
    assert names, "the dashboard has no Ray Serve row"
    # Ray's own Serve dashboards name the series as Ray exports them (e.g. `_total` on
    # counters); find_spec locates Ray without importing it.
    spec = importlib.util.find_spec("ray")
    assert spec is not None, "ray is not installed"
    assert spec.origin is not None
    dashboards = Path(spec.origin).parent / "dashboard" / "modules" / "metrics" / "dashboards"
    known = " ".join(p.read_text(encoding="utf-8") for p in dashboards.glob("serve*_panels.py"))
    assert known, f"Ray's Serve dashboard definitions are not in {dashboards}"
    missing = sorted(name for name in names if name not in known)
    assert not missing, f"Ray Serve does not export {missing}"


# --- dashboard --------------------------------------------------------------------------


def test_dashboard_identity_and_datasource_variable() -> None:
    dashboard = load_dashboard()
    uid = dashboard.get("uid", "")
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), f"bad dashboard uid {uid!r}"
    uids = [
        json.loads(p.read_text(encoding="utf-8")).get("uid") for p in GRAFANA_DIR.glob("*.json")
    ]
    assert uids.count(uid) == 1, f"dashboard uid {uid!r} is not unique in {GRAFANA_DIR}"
    assert dashboard.get("title")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = variables.get("datasource")
    assert datasource is not None, "no `datasource` template variable"
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    assert dashboard.get("links", []) == [], "the dashboard links outside"


def test_dashboard_panels_have_titles_queries_and_the_datasource_variable() -> None:
    panels = list(walk_panels(load_dashboard()["panels"]))
    assert panels
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        title = panel.get("title", "")
        assert title.strip(), f"panel {panel['id']} has no title"
        assert panel["type"] in CORE_PANEL_TYPES, f"{title}: panel type {panel['type']} is a plugin"
        if panel["type"] == "row":
            continue
        assert panel.get("datasource", {}).get("uid") == DATASOURCE_UID, f"{title}: datasource"
        targets = panel.get("targets", [])
        assert targets, f"{title}: no query"
        for target in targets:
            assert str(target.get("expr", "")).strip(), f"{title}: empty query"
            uid = target.get("datasource", {}).get("uid", DATASOURCE_UID)
            assert uid == DATASOURCE_UID, f"{title}: target datasource {uid!r}"


def test_dashboard_covers_every_catalogued_metric() -> None:
    catalogue = load_catalogue()
    used = {
        resolve(name, catalogue)
        for expr in dashboard_exprs()
        for name in ENCLAVE_NAME.findall(expr)
    }
    missing = sorted(set(catalogue) - used)
    assert not missing, f"metrics with no dashboard panel: {missing}"
