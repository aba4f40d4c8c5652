"""Production defaults over the rendered manifests: security, probes, images, secrets, PDBs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from core.settings import Settings
from serving.runtime_env import offline_environment
from tests.helm.conftest import CHART, Rendered
from tests.helm.pods import containers, pod_templates, ray_containers

VALUES = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
SECRET_LOOKING = re.compile(
    r"(?i)(password|secret|pepper|credential|(^|_)(token|key)($|_)|database__url)"
)


def test_every_pdb_sets_exactly_one_of_min_available_and_max_unavailable(
    rendered: Rendered,
) -> None:
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        spec = pdb["spec"]
        assert ("minAvailable" in spec) != ("maxUnavailable" in spec), pdb["metadata"]["name"]
        assert spec["selector"]["matchLabels"]


def test_each_ray_group_has_a_pdb_that_selects_its_pods(default: Rendered) -> None:
    pdbs = default.of_kind("PodDisruptionBudget")
    for where, template in pod_templates(default):
        if template["spec"]["containers"][0]["name"] not in {"ray-head", "ray-worker"}:
            continue
        labels = template["metadata"]["labels"]
        matching = [
            p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, where


def test_ray_containers_have_all_three_probes_with_timings_from_values(
    rendered: Rendered,
) -> None:
    found = 0
    for where, container in ray_containers(rendered):
        role = "head" if where.endswith("/head") else "worker"
        for kind in ("startup", "liveness", "readiness"):
            probe = container[f"{kind}Probe"]
            expected = VALUES["probes"][role][kind]
            assert probe["httpGet"] == {"path": expected["path"], "port": expected["port"]}
            assert probe["failureThreshold"] == expected["failureThreshold"], where
            assert probe["periodSeconds"] == expected["periodSeconds"], where
        found += 1
    assert found >= 2


def test_workers_are_ready_only_when_the_api_answers_readyz(default: Rendered) -> None:
    for where, container in ray_containers(default):
        if where.endswith("/head"):
            # KubeRay deploys Serve only after the head is ready: no Serve probe there.
            assert container["readinessProbe"]["httpGet"]["port"] != 8000
        else:
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8000}


def test_a_probe_can_be_switched_off(render: Callable[..., Rendered]) -> None:
    rendered = render(sets=["probes.worker.liveness.enabled=false"])
    for where, container in ray_containers(rendered):
        assert ("livenessProbe" in container) == where.endswith("/head")


def _image_is_pinned(image: str) -> bool:
    if re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", image):
        return True
    match = re.fullmatch(r"[^:@\s]+(?::\d+)?(?:/[^:@\s]+)*:([\w][\w.-]{0,127})", image)
    return match is not None and match.group(1) != "latest"


def test_every_image_is_pinned_and_never_latest(rendered: Rendered) -> None:
    images = [(where, c["image"]) for where, c in containers(rendered)]
    assert images
    for where, image in images:
        assert _image_is_pinned(image), f"{where}: {image}"


def test_the_default_tag_is_the_app_version(default: Rendered) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    for _, container in containers(default):
        assert container["image"] == f"enclave:{chart['appVersion']}"


def test_a_digest_pins_the_image(render: Callable[..., Rendered]) -> None:
    digest = "sha256:" + "ab" * 32
    rendered = render(sets=[f"image.digest={digest}"])
    for _, container in containers(rendered):
        assert container["image"] == f"enclave@{digest}"


def test_no_secret_is_rendered_and_secret_values_come_from_secrets(rendered: Rendered) -> None:
    assert not rendered.of_kind("Secret")
    for where, container in containers(rendered):
        for env in container.get("env", []):
            name = env["name"]
            if name.endswith("_FILE"):
                assert env["value"].startswith("/etc/enclave-secrets/"), f"{where}: {name}"
            elif SECRET_LOOKING.search(name):
                assert "secretKeyRef" in env.get("valueFrom", {}), f"{where}: {name} is inline"


def test_the_database_url_comes_from_the_referenced_secret(default: Rendered) -> None:
    for where, container in ray_containers(default):
        env = {e["name"]: e for e in container["env"]}
        ref = env["ENCLAVE_DATABASE__URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "enclave-database", "key": "url"}, where


def test_mounted_secret_files_point_into_their_secret_volumes(
    render: Callable[..., Rendered],
) -> None:
    rendered = render(["ci/cpu-values.yaml"])
    for where, template in pod_templates(rendered):
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for container in template["spec"]["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            for env in container.get("env", []):
                if not env["name"].endswith("_FILE"):
                    continue
                path = Path(env["value"])
                volume = volumes[mounts[str(path.parent)]]
                assert volume["secret"]["items"][0]["path"] == path.name, where


def test_pods_run_non_root_with_runtime_default_seccomp(rendered: Rendered) -> None:
    for where, template in pod_templates(rendered):
        security = template["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True, where
        assert security["runAsUser"] != 0, where
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where


def test_containers_are_locked_down(rendered: Rendered) -> None:
    for where, container in containers(rendered):
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["capabilities"]["drop"] == ["ALL"], where
        assert "add" not in security["capabilities"], where
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert container["resources"]["requests"], where
        assert container["resources"]["limits"], where


def test_writable_paths_are_empty_dirs(default: Rendered) -> None:
    for where, container in ray_containers(default):
        template = dict(pod_templates(default))[where]
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for path in ("/tmp", "/tmp/ray", "/var/lib/enclave", "/dev/shm"):
            assert "emptyDir" in volumes[mounts[path]["name"]], f"{where}: {path}"
        assert mounts["/models"]["readOnly"] is True
        assert volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]["readOnly"] is True
        # Knowledge-base versions are shared by the retriever replicas on every pod.
        knowledge = mounts["/var/lib/enclave/knowledge"]
        assert not knowledge.get("readOnly")
        assert volumes[knowledge["name"]]["persistentVolumeClaim"]["claimName"] == (
            "enclave-knowledge"
        )


def test_the_model_store_is_verified_before_ray_starts(default: Rendered) -> None:
    for where, template in pod_templates(default):
        if template["spec"]["containers"][0]["name"] in {"ray-head", "ray-worker"}:
            (init,) = template["spec"]["initContainers"]
            assert init["command"] == ["enclave", "models", "verify"], where
            assert {"mountPath": "/models", "name": "models", "readOnly": True} in init[
                "volumeMounts"
            ]


def test_containers_run_offline_like_the_embedded_stack(default: Rendered) -> None:
    # The chart's copy of serving/runtime_env.py `offline_environment`, for its data dir.
    settings = Settings().model_copy(
        update={"paths": Settings().paths.model_copy(update={"data_dir": Path("/var/lib/enclave")})}
    )
    expected = offline_environment(settings)
    for where, container in ray_containers(default):
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {k: env.get(k) for k in expected} == expected, where
        assert env["ENCLAVE_PATHS__DATA_DIR"] == "/var/lib/enclave"
        assert env["ENCLAVE_PATHS__MODEL_STORE_DIR"] == "/models"


def test_gpu_workers_request_gpus_on_gpu_nodes(render: Callable[..., Rendered]) -> None:
    rendered = render(["ci/gpu-values.yaml"])
    service = rendered.one("RayService")
    groups = {g["groupName"]: g for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    spec = groups["gpu"]["template"]["spec"]
    resources = spec["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert groups["gpu"]["rayStartParams"]["num-gpus"] == "1"
    assert (
        "nvidia.com/gpu"
        not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    )


def test_settings_changes_roll_a_new_ray_cluster(render: Callable[..., Rendered]) -> None:
    def checksum(rendered: Rendered) -> Any:
        head = rendered.one("RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]
        return head["template"]["metadata"]["annotations"]["checksum/settings"]

    assert checksum(render()) != checksum(render(sets=["settings.telemetry.log_level=DEBUG"]))


def test_a_restart_token_rolls_every_ray_group(render: Callable[..., Rendered]) -> None:
    rendered = render(sets=["ray.restartToken=2026-11-27"])
    for where, template in pod_templates(rendered):
        if template["spec"]["containers"][0]["name"] in {"ray-head", "ray-worker"}:
            annotations = template["metadata"]["annotations"]
            assert annotations["enclave.dev/restart-token"] == "2026-11-27", where
