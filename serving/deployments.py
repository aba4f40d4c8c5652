"""Ray Serve deployments: one class per hosted model, plus the API ingress.

Only the plain dataclasses of ``models.llm.base`` cross the handles.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from core.settings import LLMModelSettings, Settings, config_version
from core.telemetry import configure_logging
from models.llm import EngineInfo, GenerationDelta, GenerationRequest, build_engine
from models.store import ModelStore

__all__ = ["APIIngress", "LLMServer"]

_log = logging.getLogger("enclave.serving")


class LLMServer:
    """Hosts one language-model engine; streams deltas through a Serve handle."""

    async def __init__(self, model: LLMModelSettings, settings: Settings) -> None:  # type: ignore[misc]
        configure_logging(settings.telemetry)
        store = ModelStore(settings.paths.model_store)
        entry = store.verify([model.store_name])[model.store_name]
        self._engine = build_engine(model, entry.folder(store.root), settings.paths.cache_dir)
        await self._engine.start()
        _log.info("engine ready", extra={"engine": model.engine, "model": model.served_name})

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream the answer (call through ``handle.options(stream=True)``)."""
        async for delta in self._engine.generate(request):
            yield delta

    def info(self) -> EngineInfo:
        """The engine and model this replica runs."""
        return self._engine.info()

    def running_requests(self) -> int:
        """Requests this replica is generating right now."""
        return self._engine.running_requests()

    async def check_health(self) -> None:
        """Serve's periodic health check, and the API's readiness probe."""
        await self._engine.check_health()

    async def __del__(self) -> None:
        await self._engine.shutdown()


class APIIngress:
    """The Litestar API, built inside the replica (a Litestar app does not pickle)."""

    def __init__(self, settings: Settings, primary: Any, fallback: Any | None) -> None:
        configure_logging(settings.telemetry)
        self._settings = settings
        self._primary = primary
        self._fallback = fallback

    async def __serve_build_asgi_app__(self) -> Any:
        from api.app import create_app
        from api.services import Services
        from serving.clients import HandleLLMClient, TemplateTokenizer

        settings = self._settings
        store = ModelStore(settings.paths.model_store)
        primary_dir = store.path_of(settings.llm.primary.store_name)
        primary = await HandleLLMClient.connect(self._primary, name="primary")
        fallback = (
            await HandleLLMClient.connect(self._fallback, name="fallback")
            if self._fallback is not None
            else None
        )
        services = Services(
            settings=settings,
            config_version=config_version(settings),
            primary=primary,
            fallback=fallback,
            tokenizer=TemplateTokenizer.from_folder(primary_dir),
        )
        return create_app(services, echo_request_id_header=False)


def llm_deployment(name: str, model: LLMModelSettings) -> Any:
    """The Serve deployment for one model, with its resources from settings."""
    resources = model.resources
    actor_options: dict[str, Any] = {"num_cpus": resources.num_cpus}
    if resources.num_gpus:
        actor_options["num_gpus"] = resources.num_gpus
    return serve.deployment(
        LLMServer,
        name=name,
        num_replicas=resources.num_replicas,
        ray_actor_options=actor_options,
        max_ongoing_requests=resources.max_ongoing_requests,
        max_queued_requests=resources.max_queued_requests,
        health_check_period_s=10,
        health_check_timeout_s=30,
        graceful_shutdown_timeout_s=5,
    )


def api_deployment(settings: Settings) -> Any:
    """The Serve ingress deployment for the Litestar API."""
    return serve.deployment(
        serve.ingress()(APIIngress),
        name="api",
        num_replicas=settings.api.num_replicas,
        ray_actor_options={"num_cpus": settings.api.num_cpus},
        max_ongoing_requests=settings.api.max_ongoing_requests,
        graceful_shutdown_timeout_s=5,
    )
