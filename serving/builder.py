"""``build_app(settings)``: the Ray Serve application — model deployments wired to the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.settings import Settings, load_settings
from serving.deployments import (
    GuardServer,
    PIIServer,
    RetrieverServer,
    api_deployment,
    llm_deployment,
    model_deployment,
)

__all__ = ["app_from_args", "build_app"]


def build_app(settings: Settings) -> Any:
    """The Serve ``Application``: LLMs, PII/NER, the text guard and the retriever behind the API."""
    primary = llm_deployment("llm_primary", settings.llm.primary).bind(
        settings.llm.primary, settings
    )
    fallback = None
    if settings.llm.fallback is not None:
        fallback = llm_deployment("llm_fallback", settings.llm.fallback).bind(
            settings.llm.fallback, settings
        )
    pii = model_deployment(PIIServer, "pii", settings.pii.resources).bind(settings)
    guard = model_deployment(GuardServer, "guard", settings.guard.resources).bind(settings)
    retriever = None
    if settings.retrieval.enabled:
        retriever = model_deployment(
            RetrieverServer, "retriever", settings.retrieval.resources
        ).bind(settings, pii)
    return api_deployment(settings).bind(settings, primary, fallback, pii, guard, retriever)


def app_from_args(args: dict[str, str]) -> Any:
    """Serve application builder for a Serve config (KubeRay ``serveConfigV2``).

    ``import_path: serving.builder:app_from_args``; ``args`` may name ``config_dir`` (where
    ``settings.yaml`` is mounted) and ``profile``; ``ENCLAVE_*`` variables apply as usual.
    """
    config_dir = args.get("config_dir")
    settings = load_settings(
        config_dir=Path(config_dir) if config_dir else None, profile=args.get("profile")
    )
    return build_app(settings)
