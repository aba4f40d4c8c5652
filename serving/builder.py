"""``build_app(settings)``: the Ray Serve application — model deployments wired to the API."""

from __future__ import annotations

from typing import Any

from core.settings import Settings
from serving.deployments import (
    GuardServer,
    PIIServer,
    api_deployment,
    llm_deployment,
    model_deployment,
)

__all__ = ["build_app"]


def build_app(settings: Settings) -> Any:
    """The Serve ``Application``: LLMs, PII/NER and the text guard behind the API ingress."""
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
    return api_deployment(settings).bind(settings, primary, fallback, pii, guard)
