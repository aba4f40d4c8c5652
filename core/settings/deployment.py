"""Where Enclave keeps its state and how it is deployed: paths, the HTTP API, replica
resources and the embedded Ray node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from core.settings.base import Section
from core.settings.scaling import AutoscalingSettings, PlacementSettings

__all__ = [
    "ApiSettings",
    "DeploymentResources",
    "PathsSettings",
    "RaySettings",
]


class PathsSettings(Section):
    """Where Enclave keeps its state."""

    data_dir: Path = Field(
        default=Path(".enclave"),
        description="Data directory: model store, Ray temp files and auth token, caches. "
        "Relative paths are resolved against the config directory at start-up.",
    )
    model_store_dir: Path | None = Field(
        default=None,
        description="Model store folder (prepared weights and manifest); null: <data_dir>/models. "
        "Read-only at run time, so several profiles may share one.",
    )

    @property
    def model_store(self) -> Path:
        """The model store folder (prepared weights and their manifest)."""
        return (
            self.model_store_dir if self.model_store_dir is not None else self.data_dir / "models"
        )

    @property
    def ray_dir(self) -> Path:
        """Ray's session/temp folder."""
        return self.data_dir / "ray"

    @property
    def cache_dir(self) -> Path:
        """Caches of libraries that would otherwise write to the home directory."""
        return self.data_dir / "cache"


class ApiSettings(Section):
    """The HTTP API (Litestar, served through the Ray Serve proxy)."""

    host: str = Field(default="127.0.0.1", description="Address the HTTP proxy binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the HTTP proxy binds to.")
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="Largest accepted request body, in bytes."
    )
    max_messages: int = Field(
        default=256, ge=1, description="Most messages accepted in one chat request."
    )
    max_message_chars: int = Field(
        default=32_000, ge=1, description="Longest accepted single message, in characters."
    )
    max_completion_tokens: int = Field(
        default=1024, ge=1, description="Upper bound a client may ask for in max_tokens."
    )
    readiness_timeout_s: float = Field(
        default=2.0, gt=0, description="How long /readyz waits for each deployment to answer."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API from other pages (CORS); empty: "
        "none (the portal is served by the API itself, so it needs none).",
    )
    num_replicas: int = Field(default=1, ge=1, description="Replicas of the API ingress.")
    num_cpus: float = Field(default=0.5, ge=0, description="Ray CPUs reserved per API replica.")
    max_ongoing_requests: int = Field(
        default=256, ge=1, description="Concurrent requests one API replica accepts."
    )
    autoscaling: AutoscalingSettings = Field(
        default_factory=AutoscalingSettings,
        description="Serve autoscaling of the API replicas (replaces num_replicas when enabled).",
    )
    placement: PlacementSettings = Field(
        default_factory=PlacementSettings, description="Where API replicas may run."
    )

    @model_validator(mode="after")
    def _replicas_fixed_or_scaled(self) -> ApiSettings:
        _check_fixed_or_scaled(self.autoscaling, "num_replicas" in self.model_fields_set)
        return self


def _check_fixed_or_scaled(autoscaling: AutoscalingSettings, fixed_set: bool) -> None:
    # Serve rejects a deployment that has both; say so at start-up, naming the fix.
    if autoscaling.enabled and fixed_set:
        msg = "set num_replicas or enable autoscaling, not both (autoscaling sets the count)"
        raise ValueError(msg)


class DeploymentResources(Section):
    """Resources and queueing of one Ray Serve deployment."""

    num_replicas: int = Field(default=1, ge=1, description="Replicas of this deployment.")
    num_cpus: float = Field(default=1.0, ge=0, description="Ray CPUs reserved per replica.")
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs reserved per replica.")
    max_ongoing_requests: int = Field(
        default=64, ge=1, description="Requests one replica works on at once."
    )
    max_queued_requests: int = Field(
        default=128,
        ge=-1,
        description="Requests queued per caller before Serve rejects (-1: unbounded).",
    )
    autoscaling: AutoscalingSettings = Field(
        default_factory=AutoscalingSettings,
        description="Serve autoscaling (replaces num_replicas when enabled).",
    )
    placement: PlacementSettings = Field(
        default_factory=PlacementSettings, description="Where the replicas may run."
    )

    @model_validator(mode="after")
    def _replicas_fixed_or_scaled(self) -> DeploymentResources:
        _check_fixed_or_scaled(self.autoscaling, "num_replicas" in self.model_fields_set)
        return self


class RaySettings(Section):
    """The embedded Ray cluster (ignored when connecting to an existing cluster)."""

    address: str | None = Field(
        default=None, description="Existing cluster to join (e.g. 'auto'); null: start locally."
    )
    num_cpus: int = Field(
        default=4, ge=1, description="Logical CPUs the local Ray node advertises."
    )
    object_store_memory_mb: int = Field(
        default=512, ge=75, description="Object store size of the local node, in MiB."
    )
    metrics_export_port: int | None = Field(
        default=8080,
        ge=1024,
        le=65535,
        description=(
            "Port of Ray's own metrics (ray_*, ray_serve_*) on 127.0.0.1, for a local "
            "Prometheus (8080, as on the chart's Ray pods); null: a random port Ray picks."
        ),
    )
    app_name: str = Field(default="enclave", description="Serve application name.")
    serve_fast_path: bool = Field(
        default=True,
        description="Run each Serve replica's code and its handles' router on the replica's "
        "own event loop instead of extra threads (two of Ray Serve's throughput-optimised "
        "settings; without its gRPC and direct-ingress parts, which would open more ports). "
        "Profiled under 32 streams, the two threads took 42 % of the API replica's samples.",
    )
    proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        default="EveryNode",
        description="Nodes that run Serve's HTTP proxy when joining a cluster (ray.address): "
        "HeadOnly when several Ray nodes share one host, whose proxies would otherwise share "
        "the port (and a stream would die with whichever node it landed on).",
    )
    startup_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="How long `enclave serve` waits for every deployment to be ready before it "
        "stops, naming the deployments still starting and where their logs are (a first start "
        "on 2 CPU cores takes about two minutes).",
    )
    log_to_console: bool = Field(
        default=False,
        description="`enclave serve` also shows the Ray, Serve and model-replica logs on its "
        "console (as `enclave serve --verbose` does for one run). They always go to files "
        "under <data_dir>/ray/session_latest/logs; the console keeps the launcher's own lines, "
        "errors and the greeting.",
    )
