"""Scaling settings of one Ray Serve deployment: Serve autoscaling and placement.

The embedded builder (``serving.builder``) applies them; in the chart, Serve's config file
(``serve.deployments.*.autoscaling`` in the values) may override autoscaling in place, and
the Ray worker groups advertise the custom resources that placement asks for.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, model_validator

from core.settings.base import Section

__all__ = ["AutoscalingSettings", "PlacementSettings"]

# Ray's predefined resources: asking for them by name here would bypass num_cpus/num_gpus.
_RESERVED_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
_RESOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


class AutoscalingSettings(Section):
    """Ray Serve autoscaling of one deployment (replaces its fixed ``num_replicas``)."""

    enabled: bool = Field(
        default=False, description="Let Serve scale the replicas between min and max."
    )
    min_replicas: int = Field(default=1, ge=0, description="Fewest replicas (0: scale to zero).")
    max_replicas: int = Field(default=1, ge=1, description="Most replicas.")
    initial_replicas: int | None = Field(
        default=None, ge=0, description="Replicas at deploy time; null: min_replicas."
    )
    target_ongoing_requests: float = Field(
        default=2.0, gt=0, description="Requests in flight per replica that Serve aims for."
    )
    upscale_delay_s: float = Field(
        default=30.0, ge=0, description="Seconds above target before a replica is added."
    )
    downscale_delay_s: float = Field(
        default=600.0, ge=0, description="Seconds below target before a replica is removed."
    )

    @model_validator(mode="after")
    def _bounds_are_ordered(self) -> AutoscalingSettings:
        problems = []
        if self.min_replicas > self.max_replicas:
            problems.append(
                f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})"
            )
        initial = self.initial_replicas
        if initial is not None and not self.min_replicas <= initial <= self.max_replicas:
            problems.append(
                f"initial_replicas ({initial}) must lie between min_replicas and max_replicas"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def serve_config(self) -> dict[str, Any]:
        """Serve's ``autoscaling_config`` for this deployment."""
        config: dict[str, Any] = {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
        }
        if self.initial_replicas is not None:
            config["initial_replicas"] = self.initial_replicas
        return config


class PlacementSettings(Section):
    """Where a deployment's replicas may run in a multi-node Ray cluster."""

    custom_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Ray custom resources each replica reserves (e.g. {enclave_llm: 1}); a "
        "replica then runs only on nodes started with that resource (`ray start --resources`, "
        "the chart's ray.workers.<group>.customResources). Empty: any node.",
    )
    max_replicas_per_node: int | None = Field(
        default=None, ge=1, description="Most replicas of this deployment on one node; null: any."
    )

    @model_validator(mode="after")
    def _resources_are_custom(self) -> PlacementSettings:
        problems = []
        for name, amount in self.custom_resources.items():
            if name in _RESERVED_RESOURCES:
                problems.append(
                    f"custom_resources.{name}: a predefined Ray resource; use num_cpus/num_gpus"
                )
            elif not _RESOURCE_NAME.match(name):
                problems.append(
                    f"custom_resources.{name}: a name is a letter, then letters, digits or _"
                )
            if amount <= 0:
                problems.append(f"custom_resources.{name}: must be > 0 (got {amount})")
        if problems:
            raise ValueError("; ".join(problems))
        return self
