"""``build_app(settings)``: the Ray Serve application — model deployments wired to the API."""

from __future__ import annotations

from typing import Any

from core.settings import Settings
from serving.deployments import api_deployment, llm_deployment

__all__ = ["build_app"]


def build_app(settings: Settings) -> Any:
    """The Serve ``Application``: primary and fallback LLM deployments behind the API ingress."""
    primary = llm_deployment("llm_primary", settings.llm.primary).bind(
        settings.llm.primary, settings
    )
    fallback = None
    if settings.llm.fallback is not None:
        fallback = llm_deployment("llm_fallback", settings.llm.fallback).bind(
            settings.llm.fallback, settings
        )
    return api_deployment(settings).bind(settings, primary, fallback)
