"""The chart lints, renders with every value set, and every manifest is valid.

Kubernetes kinds are validated offline by kubernetes-validate (--strict) against Kubernetes
1.31; the RayService against the KubeRay CRD's openAPIV3Schema, made strict here (the API
server prunes unknown fields silently, so a typo would otherwise pass unnoticed); the Serve
config inside it against Ray Serve's own schema.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.helm.conftest import (
    KUBERAY_CRD,
    KUBERNETES_VERSION,
    VALUE_SETS,
    Rendered,
    run_helm,
    template_args,
)
from tests.helm.pods import pod_templates, ray_containers

CRD_KINDS = {"RayService", "ServiceMonitor", "PrometheusRule"}


def test_lint_strict(helm: Path, chart_dir: Path, value_set: str) -> None:
    args = ["lint", "--strict", str(chart_dir)]
    for name in VALUE_SETS[value_set]:
        args += ["-f", str(chart_dir / name)]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_manifest_is_valid_kubernetes(rendered: Rendered) -> None:
    checked = 0
    for doc in rendered.docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {exc.path}")
        checked += 1
    assert checked >= 6


def test_ray_pod_templates_are_valid_pod_templates(rendered: Rendered) -> None:
    # The CRD embeds PodTemplateSpec; validating each as a core PodTemplate checks the pod
    # specs against Kubernetes itself, strictly.
    for where, template in pod_templates(rendered):
        wrapper = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "check"},
            "template": template,
        }
        try:
            kubernetes_validate.validate(wrapper, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {exc.path}")


def _strict(schema: Any) -> Any:
    """The schema with unknown properties rejected wherever the CRD lists the known ones."""
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def _rayservice_schema() -> dict[str, Any]:
    if not KUBERAY_CRD.is_file():
        pytest.fail(f"{KUBERAY_CRD} is missing: the KubeRay CRD lives in ../shared/schemas.")
    crd = yaml.safe_load(KUBERAY_CRD.read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: dict[str, Any] = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    # metadata is validated by the API server itself, not by the CRD.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def test_rayservice_matches_the_kuberay_crd(rendered: Rendered) -> None:
    service = rendered.one("RayService")
    assert service["apiVersion"] == "ray.io/v1"
    validator = jsonschema.Draft202012Validator(_rayservice_schema())
    errors = sorted(validator.iter_errors(service), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]
    )


def test_the_crd_check_catches_a_typo(rendered: Rendered) -> None:
    service = copy.deepcopy(rendered.one("RayService"))
    service["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParam"] = {}
    validator = jsonschema.Draft202012Validator(_rayservice_schema())
    assert list(validator.iter_errors(service))


def serve_config(rendered: Rendered) -> dict[str, Any]:
    """The Serve config (serveConfigV2) of the RayService, parsed."""
    parsed: dict[str, Any] = yaml.safe_load(rendered.one("RayService")["spec"]["serveConfigV2"])
    return parsed


def test_serve_config_is_valid_for_ray_serve(rendered: Rendered) -> None:
    from ray.serve.schema import ServeDeploySchema

    config = serve_config(rendered)
    ServeDeploySchema.model_validate(config)
    (app,) = config["applications"]
    assert app["import_path"] == "serving.builder:app_from_args"
    assert app["route_prefix"] == "/"
    assert config["http_options"]["host"] == "0.0.0.0"


def test_serve_builder_reads_the_mounted_settings(rendered: Rendered) -> None:
    (app,) = serve_config(rendered)["applications"]
    config_dir = app["args"]["config_dir"]
    settings_map = next(
        d for d in rendered.of_kind("ConfigMap") if d["metadata"]["name"].endswith("-settings")
    )
    assert "settings.yaml" in settings_map["data"]
    groups = 0
    for where, template in pod_templates(rendered):
        ray = template["spec"]["containers"][0]
        if ray["name"] not in {"ray-head", "ray-worker"}:
            continue
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in ray["volumeMounts"]}
        assert mounts[config_dir] == "settings", where
        assert volumes["settings"]["configMap"]["name"] == settings_map["metadata"]["name"]
        groups += 1
    assert groups >= 2


def test_the_api_scales_through_serve_autoscaling(default: Rendered) -> None:
    deployments = {d["name"]: d for d in serve_config(default)["applications"][0]["deployments"]}
    api = deployments["api"]
    assert api["num_replicas"] == "auto"
    assert api["autoscaling_config"]["min_replicas"] >= 2
    # No HorizontalPodAutoscaler: a RayService has no scale subresource (ADR 0003).
    assert not default.of_kind("HorizontalPodAutoscaler")


def test_deployments_the_settings_leave_out_get_no_overrides(render: Any) -> None:
    # Serve refuses a config that overrides a deployment the application does not have.
    rendered = render(
        sets=[
            "settings.llm.fallback=null",
            "settings.retrieval.enabled=false",
            "serve.deployments.llmFallback.autoscaling.enabled=true",
            "serve.deployments.retriever.autoscaling.enabled=true",
            "serve.deployments.pii.autoscaling.enabled=true",
        ]
    )
    names = [d["name"] for d in serve_config(rendered)["applications"][0]["deployments"]]
    assert names == ["api", "pii"]


def test_the_history_vault_keys_are_mounted_files_never_values(render: Any) -> None:
    rotating = render(
        sets=[
            "history.vaultKey.existingSecret=vault-new",
            "history.retiredVaultKey.existingSecret=vault-old",
        ]
    )
    for where, container in ray_containers(rotating):
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["ENCLAVE_HISTORY__VAULT_KEY_FILE"] == "/etc/enclave-secrets/history/vault-key"
        # A list setting: the retired key's file, as JSON.
        assert env["ENCLAVE_HISTORY__RETIRED_VAULT_KEY_FILES"] == (
            '["/etc/enclave-secrets/history-retired/vault-key"]'
        ), where
    secrets = {
        v["secret"]["secretName"]
        for _, template in pod_templates(rotating)
        for v in template["spec"].get("volumes", [])
        if "secret" in v
    }
    assert {"vault-new", "vault-old"} <= secrets


def test_worker_groups_offer_the_custom_resources_placement_asks_for(render: Any) -> None:
    gpu = render(VALUE_SETS["gpu"])
    cluster = gpu.one("RayService")["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    # KubeRay hands the value to the shell: JSON inside double quotes, as its docs show.
    offered = {
        name: json.loads(json.loads(group["rayStartParams"]["resources"]))
        for name, group in groups.items()
    }
    assert offered == {"cpu": {"enclave_guard": 100}, "gpu": {"enclave_llm": 1}}
    settings_map = next(
        d for d in gpu.of_kind("ConfigMap") if d["metadata"]["name"].endswith("-settings")
    )
    settings = yaml.safe_load(settings_map["data"]["settings.yaml"])
    placement = settings["llm"]["primary"]["resources"]["placement"]
    assert placement == {"custom_resources": {"enclave_llm": 1}}
    assert "resources" not in cluster["headGroupSpec"]["rayStartParams"]


def test_placement_nobody_offers_is_refused(helm: Path, chart_dir: Path) -> None:
    sets = [
        "settings.llm.primary.resources.placement.custom_resources.enclave_llm=1",
        "settings.guard.resources.placement.custom_resources.enclave_guard=1",
        "ray.workers.cpu.customResources.enclave_guard=10",
    ]
    result = run_helm(helm, *template_args(chart_dir, sets=sets))
    assert result.returncode != 0
    assert "settings.llm.primary.resources.placement.custom_resources.enclave_llm" in result.stderr
    assert "custom_resources.enclave_guard" not in result.stderr
