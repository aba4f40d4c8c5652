"""Scaling settings: replicas, Serve autoscaling, placement and routing reach the deployments."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.errors import ConfigurationError
from core.settings import Settings, load_settings
from models.llm.base import ChatMessage, GenerationRequest, SamplingOptions
from serving.deployments import api_deployment, llm_deployment, model_deployment
from serving.routing import ChatPrefixAffinityRouter


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ENCLAVE_"):
            monkeypatch.delenv(key)


SCALED = """
api:
  autoscaling: {enabled: true, min_replicas: 2, max_replicas: 6, target_ongoing_requests: 64,
                upscale_delay_s: 5, downscale_delay_s: 120}
  placement: {custom_resources: {enclave_guard: 1}, max_replicas_per_node: 1}
llm:
  primary:
    routing: prefix_affinity
    resources:
      num_cpus: 1
      autoscaling: {enabled: true, min_replicas: 1, max_replicas: 3, initial_replicas: 2,
                    target_ongoing_requests: 24, upscale_delay_s: 10, downscale_delay_s: 300}
      placement: {custom_resources: {enclave_llm: 1}}
guard:
  resources:
    num_replicas: 3
    placement: {custom_resources: {enclave_guard: 0.5}}
"""


def test_autoscaling_and_placement_reach_the_deployments(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(SCALED, encoding="utf-8")
    settings = load_settings(config_dir=tmp_path)

    primary = llm_deployment("llm_primary", settings.llm.primary)
    scaling = primary._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas, scaling.initial_replicas) == (1, 3, 2)
    assert scaling.target_ongoing_requests == 24
    assert (scaling.upscale_delay_s, scaling.downscale_delay_s) == (10, 300)
    assert primary.ray_actor_options == {"num_cpus": 1, "resources": {"enclave_llm": 1}}
    router = primary._deployment_config.request_router_config
    assert router.request_router_class == "serving.routing:ChatPrefixAffinityRouter"

    api = api_deployment(settings)
    assert api._deployment_config.autoscaling_config.max_replicas == 6
    assert api._deployment_config.autoscaling_config.target_ongoing_requests == 64
    assert api.ray_actor_options["resources"] == {"enclave_guard": 1}
    assert api._replica_config.max_replicas_per_node == 1

    guard = model_deployment(object, "guard", settings.guard.resources)
    assert guard.num_replicas == 3
    assert guard._deployment_config.autoscaling_config is None
    assert guard.ray_actor_options["resources"] == {"enclave_guard": 0.5}


def test_defaults_keep_one_fixed_replica_anywhere_and_default_routing() -> None:
    settings = Settings()
    primary = llm_deployment("llm_primary", settings.llm.primary)
    assert primary.num_replicas == 1
    assert primary._deployment_config.autoscaling_config is None
    assert "resources" not in primary.ray_actor_options
    router = primary._deployment_config.request_router_config
    assert "ChatPrefixAffinityRouter" not in str(router.request_router_class)


def test_every_scaling_problem_is_listed_at_once(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(
        """
api:
  num_replicas: 2
  autoscaling: {enabled: true, min_replicas: 1, max_replicas: 4}
llm:
  primary:
    resources:
      autoscaling: {enabled: true, min_replicas: 5, max_replicas: 2, initial_replicas: 9}
      placement: {custom_resources: {CPU: 1, "bad name": 1, enclave_llm: 0}}
    routing: nearest
  fallback:
    resources:
      autoscaling: {enabled: true, target_ongoing_requests: 0}
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config_dir=tmp_path)
    message = str(caught.value)
    for expected in (
        "api: Value error, set num_replicas or enable autoscaling, not both",
        "llm.fallback.resources.autoscaling.target_ongoing_requests",
        "min_replicas (5) must be <= max_replicas (2)",
        "initial_replicas (9) must lie between min_replicas and max_replicas",
        "custom_resources.CPU: a predefined Ray resource",
        "custom_resources.bad name: a name is a letter",
        "custom_resources.enclave_llm: must be > 0",
        "llm.primary.routing",
    ):
        assert expected in message, message


def _pending(*messages: str) -> SimpleNamespace:
    # What the router reads of Serve's PendingRequest: the call's positional arguments (a
    # real PendingRequest makes a future on the running event loop).
    request = GenerationRequest(
        request_id="r1",
        messages=tuple(ChatMessage(role="user", content=text) for text in messages),
        sampling=SamplingOptions(max_tokens=8),
    )
    return SimpleNamespace(args=[request], kwargs={})


def test_prefix_router_keys_on_the_chat_messages() -> None:
    # Ray's own router reads a tuple of dataclasses as "" (every chat would share one prefix).
    router = object.__new__(ChatPrefixAffinityRouter)
    first = router._extract_text_from_request(_pending("Summarise the travel policy"))
    second = router._extract_text_from_request(_pending("Summarise the travel policy", "And?"))
    other = router._extract_text_from_request(_pending("What is our VPN address?"))
    assert first.startswith("user:Summarise the travel policy")
    assert second.startswith(first)
    assert not other.startswith(first[:10])
