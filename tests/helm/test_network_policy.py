"""The NetworkPolicies enforce "no data leaves the premises": default deny, named exceptions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.helm.conftest import Rendered
from tests.helm.pods import pod_templates

RAY_POD = {"enclave.dev/ray-node": "true"}


def _policy(rendered: Rendered, suffix: str) -> dict[str, Any]:
    (policy,) = [
        p for p in rendered.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith(suffix)
    ]
    return policy


def _selects_ray_pods(peer: dict[str, Any]) -> bool:
    labels = peer.get("podSelector", {}).get("matchLabels", {})
    return set(peer) == {"podSelector"} and RAY_POD.items() <= labels.items()


def _ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


def test_every_pod_of_the_release_is_under_a_policy(default: Rendered) -> None:
    policies = default.of_kind("NetworkPolicy")
    for where, template in pod_templates(default):
        if where.startswith("Pod/"):
            continue  # `helm test` pod: labelled as the canary, checked below
        labels = template["metadata"]["labels"]
        covering = [
            p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        ]
        assert covering, where
        for policy in covering:
            assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_ray_egress_is_dns_ray_database_and_redis_only(default: Rendered) -> None:
    egress = _policy(default, "-ray")["spec"]["egress"]
    for rule in egress:
        # A rule without peers would allow those ports to anywhere, outside included.
        assert rule.get("to"), rule
        for peer in rule["to"]:
            assert "ipBlock" not in peer, rule
    dns, ray, database, redis = egress
    assert _ports(dns) == {53}
    assert {p["protocol"] for p in dns["ports"]} == {"UDP", "TCP"}
    assert all(
        peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
        for peer in dns["to"]
    )
    assert [_selects_ray_pods(p) for p in ray["to"]] == [True]
    assert "ports" not in ray
    assert _ports(database) == {5432}
    assert _ports(redis) == {6379}


def test_ray_ingress_opens_internal_ports_to_ray_pods_only(default: Rendered) -> None:
    ingress = _policy(default, "-ray")["spec"]["ingress"]
    unrestricted = [rule for rule in ingress if "ports" not in rule]
    assert len(unrestricted) == 1
    assert all(_selects_ray_pods(peer) for peer in unrestricted[0]["from"])
    by_port = {frozenset(_ports(rule)): rule for rule in ingress if "ports" in rule}
    assert set(by_port) == {frozenset({8000}), frozenset({8265}), frozenset({8080})}
    serve_from = by_port[frozenset({8000})]["from"]
    assert serve_from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "canary"


def test_canary_and_migrations_reach_only_what_they_need(default: Rendered) -> None:
    canary = _policy(default, "-canary")["spec"]
    assert "ingress" not in canary
    # DNS, the API, and the database it records its results in (API replicas export them).
    assert [_ports(r) for r in canary["egress"]] == [{53}, {8000}, {5432}]
    assert _selects_ray_pods(canary["egress"][1]["to"][0])
    migrations = _policy(default, "-migrations")["spec"]
    assert "ingress" not in migrations
    assert [_ports(r) for r in migrations["egress"]] == [{53}, {5432}]


def test_optional_services_add_their_own_narrow_rules(render: Callable[..., Rendered]) -> None:
    rendered = render(["ci/gpu-values.yaml"])
    egress = _policy(rendered, "-ray")["spec"]["egress"]
    assert all(rule.get("to") for rule in egress)
    ports = [_ports(rule) for rule in egress]
    assert {4318} in ports  # OTLP collector
    assert {443, 6443} in ports  # the autoscaler's API server, by address
    api = next(rule for rule in egress if _ports(rule) == {443, 6443})
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.10/32"}}]
    assert {8443} in ports  # the IdP, from extraEgress


def test_no_policy_without_redis_rule_when_redis_is_off(render: Callable[..., Rendered]) -> None:
    rendered = render(["ci/minimal-values.yaml"])
    ports = [_ports(rule) for rule in _policy(rendered, "-ray")["spec"]["egress"]]
    assert {6379} not in ports
