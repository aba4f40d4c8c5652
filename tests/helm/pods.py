"""Where the pod specs sit inside the rendered manifests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.helm.conftest import Rendered


def pod_templates(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod template with metadata and spec) for every pod the chart describes."""
    for doc in rendered.docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind == "RayService":
            cluster = doc["spec"]["rayClusterConfig"]
            yield f"{name}/head", cluster["headGroupSpec"]["template"]
            for group in cluster.get("workerGroupSpecs", []):
                yield f"{name}/{group['groupName']}", group["template"]
        elif kind == "Job":
            yield f"Job/{name}", doc["spec"]["template"]
        elif kind == "CronJob":
            yield f"CronJob/{name}", doc["spec"]["jobTemplate"]["spec"]["template"]
        elif kind == "Pod":
            yield f"Pod/{name}", {"metadata": doc["metadata"], "spec": doc["spec"]}


def containers(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, container) for every container and init container."""
    for where, template in pod_templates(rendered):
        spec = template["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield f"{where}/{container['name']}", container


def ray_containers(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, container) for the Ray container of every Ray node group."""
    for where, template in pod_templates(rendered):
        first = template["spec"]["containers"][0]
        if first["name"] in {"ray-head", "ray-worker"}:
            yield where, first
