"""The canary CronJob records each run in the database, where every API replica reads it for
its /metrics (Prometheus never scrapes the CronJob's short-lived pod)."""

from __future__ import annotations

from typing import Any

from tests.helm.conftest import Rendered


def _canary_container(rendered: Rendered) -> dict[str, Any]:
    (cronjob,) = [
        c for c in rendered.of_kind("CronJob") if c["metadata"]["name"].endswith("-canary")
    ]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_the_canary_pod_gets_the_database_url_from_the_secret(default: Rendered) -> None:
    env = {e["name"]: e for e in _canary_container(default)["env"]}
    ref = env["ENCLAVE_DATABASE__URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "enclave-database", "key": "url"}
    assert "value" not in env["ENCLAVE_DATABASE__URL"]  # never inline in the manifest


def test_the_canary_may_reach_the_database_port_and_nothing_new_beyond(
    default: Rendered,
) -> None:
    (policy,) = [
        p for p in default.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-canary")
    ]
    ports = [{p["port"] for p in rule.get("ports", [])} for rule in policy["spec"]["egress"]]
    assert ports == [{53}, {8000}, {5432}]
    database_rule = policy["spec"]["egress"][2]
    assert database_rule["to"] == [{"namespaceSelector": {}}]  # database.networkPeers
