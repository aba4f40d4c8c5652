"""values.schema.json rejects typos and wrong types; _validate.tpl reports every problem at once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import yaml

from core.settings import load_settings
from tests.helm.conftest import CHART, Rendered, run_helm, template_args


def test_the_schema_is_draft_2020_12_and_accepts_the_defaults() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(values)


def test_every_value_is_annotated() -> None:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    annotated = set(re.findall(r"^\s*## @param ([\w.]+)", text, flags=re.MULTILINE))
    values = yaml.safe_load(text)

    def leaves(node: object, prefix: str) -> set[str]:
        if isinstance(node, dict) and node and prefix not in annotated:
            out: set[str] = set()
            for key, value in node.items():
                out |= leaves(value, f"{prefix}.{key}" if prefix else key)
            return out
        return {prefix}

    missing = sorted(
        leaf
        for leaf in leaves(values, "")
        if not any(leaf == a or leaf.startswith(a + ".") for a in annotated)
    )
    assert not missing, f"values without a `## @param` line: {missing}"


def test_the_schema_rejects_a_typo(helm: Path, chart_dir: Path) -> None:
    result = run_helm(helm, *template_args(chart_dir, sets=["ray.workers.cpu.replcas=3"]))
    assert result.returncode != 0
    assert "replcas" in result.stderr
    assert "not allowed" in result.stderr


def test_the_schema_rejects_a_wrong_type(helm: Path, chart_dir: Path) -> None:
    result = run_helm(
        helm, *template_args(chart_dir, sets=["probes.worker.readiness.periodSeconds=often"])
    )
    assert result.returncode != 0
    assert "periodSeconds" in result.stderr
    assert "want integer" in result.stderr


def test_the_schema_rejects_latest(helm: Path, chart_dir: Path) -> None:
    result = run_helm(helm, *template_args(chart_dir, sets=["image.tag=latest"]))
    assert result.returncode != 0
    assert "/image/tag" in result.stderr


def test_validation_reports_every_problem_at_once(helm: Path, chart_dir: Path) -> None:
    sets = [
        "database.existingSecret=",  # no database Secret
        "redis.enabled=false",  # while the API autoscales to 8 replicas
        "settings.paths.data_dir=/elsewhere",  # the chart owns paths
        "ray.head.pdb.maxUnavailable=1",  # both minAvailable and maxUnavailable
        "ray.workers.gpu.enabled=true",  # but no model asks for a GPU
        "extraEnv[0].name=ENCLAVE_DB_PASSWORD",  # a secret as a plain value
        "extraEnv[0].value=hunter2",
        "networkPolicy.extraEgress[0].ports[0].port=443",  # a rule to anywhere
    ]
    result = run_helm(helm, *template_args(chart_dir, sets=sets))
    assert result.returncode != 0
    message = result.stderr
    assert "found 7 problem(s)" in message, message
    for needle in (
        "database.existingSecret",
        "redis.enabled",
        "settings.paths",
        "ray.head.pdb",
        "settings.llm.primary.resources.num_gpus",
        "extraEnv.ENCLAVE_DB_PASSWORD",
        "networkPolicy.extraEgress[0]",
    ):
        assert needle in message, needle


def test_gpu_models_need_a_gpu_group(helm: Path, chart_dir: Path) -> None:
    sets = ["settings.llm.primary.resources.num_gpus=1"]
    result = run_helm(helm, *template_args(chart_dir, sets=sets))
    assert result.returncode != 0
    assert "ray.workers.gpu.enabled" in result.stderr


def test_the_autoscaler_needs_the_api_server_addresses(helm: Path, chart_dir: Path) -> None:
    result = run_helm(helm, *template_args(chart_dir, sets=["ray.autoscaler.enabled=true"]))
    assert result.returncode != 0
    assert "networkPolicy.kubernetesApi.cidrs" in result.stderr


def test_the_rendered_settings_are_valid_enclave_settings(
    rendered: Rendered, tmp_path: Path
) -> None:
    # The application validates settings.yaml at start-up; a typo in `settings` would only
    # show there, in a crash-looping pod. Load each rendering's file the way a pod does.
    (config_map,) = [
        c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-settings")
    ]
    (tmp_path / "settings.yaml").write_text(config_map["data"]["settings.yaml"], encoding="utf-8")
    settings = load_settings(config_dir=tmp_path, profile="default")
    assert settings.telemetry.log_format == "json"
