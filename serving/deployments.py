"""Ray Serve deployments: one class per hosted model, plus the API ingress.

Only the plain dataclasses of ``models.llm.base`` cross the handles.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from ray import serve

from core.db import Database, check_schema
from core.settings import (
    AutoscalingSettings,
    DeploymentResources,
    LLMModelSettings,
    PlacementSettings,
    Settings,
    config_version,
)
from core.telemetry import configure_logging
from core.tracing import configure_tracing, extracted, span
from index.base import RetrievalResult
from index.service import KnowledgeBaseService
from models.guard_types import GuardVerdict
from models.llm import EngineInfo, GenerationDelta, GenerationRequest, build_engine, coalesce
from models.pii.base import ScanResult
from models.store import ModelStore

__all__ = ["APIIngress", "GuardServer", "LLMServer", "PIIServer", "RetrieverServer"]

_log = logging.getLogger("enclave.serving")


class LLMServer:
    """Hosts one language-model engine; streams deltas through a Serve handle."""

    async def __init__(self, model: LLMModelSettings, settings: Settings) -> None:  # type: ignore[misc]
        configure_logging(settings.telemetry)
        configure_tracing(settings.telemetry, component=serve.get_replica_context().deployment)
        store = ModelStore(settings.paths.model_store)
        entry = store.verify([model.store_name])[model.store_name]
        self._engine = build_engine(model, entry.folder(store.root), settings.paths.cache_dir)
        self._stream_interval_s = model.stream_interval_ms / 1000
        await self._engine.start()
        _log.info("engine ready", extra={"engine": model.engine, "model": model.served_name})

    async def generate(
        self, request: GenerationRequest, trace_context: dict[str, str] | None = None
    ) -> AsyncIterator[GenerationDelta]:
        """Stream the answer (call through ``handle.options(stream=True)``)."""
        info = self._engine.info()
        attributes: dict[str, str | int] = {
            "enclave.engine": info.engine,
            "gen_ai.request.model": info.model,
            "gen_ai.request.max_tokens": request.sampling.max_tokens,
        }
        with extracted(trace_context), span("llm.generate", attributes) as current:
            produced = 0
            # aclosing: when the caller goes away the engine's request is aborted now.
            deltas = coalesce(self._engine.generate(request), self._stream_interval_s)
            async with aclosing(deltas):
                async for delta in deltas:
                    produced = delta.completion_tokens
                    yield delta
            current.set_attribute("gen_ai.usage.output_tokens", produced)

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


class PIIServer:
    """Presidio + spaCy: PII spans and named entities, batched across requests."""

    def __init__(self, settings: Settings) -> None:
        configure_logging(settings.telemetry)
        configure_tracing(settings.telemetry, component="pii")
        from models.pii.presidio_scanner import PresidioScanner

        store = ModelStore(settings.paths.model_store)
        name = settings.pii.spacy_store_name
        self._scanner = PresidioScanner(store.verify([name])[name].folder(store.root), settings.pii)
        self._scanner.load()

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _scan_batch(self, batches: list[list[str]]) -> list[list[ScanResult]]:
        flat = [text for texts in batches for text in texts]
        results = self._scanner.scan(flat)
        out, cursor = [], 0
        for texts in batches:
            out.append(results[cursor : cursor + len(texts)])
            cursor += len(texts)
        return out

    async def scan(
        self, texts: list[str], trace_context: dict[str, str] | None = None
    ) -> list[ScanResult]:
        """One result per text: PII spans and spaCy entities (offsets only)."""
        if not texts:
            return []
        with extracted(trace_context), span("pii.scan", {"enclave.texts": len(texts)}):
            result: list[ScanResult] = await self._scan_batch(texts)
        return result

    def check_health(self) -> None:
        """Serve's periodic health check."""


class GuardServer:
    """MiniLM encoder with the intent and injection heads, batched across requests."""

    def __init__(self, settings: Settings) -> None:
        configure_logging(settings.telemetry)
        configure_tracing(settings.telemetry, component="guard")
        from models.classifier_training import ENCODER_MODEL_NAME
        from models.guard import TextGuard
        from models.injection import INJECTION_MODEL_NAME
        from models.intent import INTENT_MODEL_NAME

        store = ModelStore(settings.paths.model_store)
        entries = store.verify([ENCODER_MODEL_NAME, INTENT_MODEL_NAME, INJECTION_MODEL_NAME])
        self._guard = TextGuard.from_folders(
            entries[ENCODER_MODEL_NAME].folder(store.root),
            entries[INTENT_MODEL_NAME].folder(store.root),
            entries[INJECTION_MODEL_NAME].folder(store.root),
            injection_threshold=settings.guard.injection_threshold,
            threads=settings.guard.encoder_threads,
            encoder_id=f"{ENCODER_MODEL_NAME}@{entries[ENCODER_MODEL_NAME].version}",
        )

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _check_batch(self, texts: list[str]) -> list[GuardVerdict]:
        return self._guard.check(texts)

    async def check(self, text: str, trace_context: dict[str, str] | None = None) -> GuardVerdict:
        """Intent and injection verdict for one message."""
        with extracted(trace_context), span("guard.classify"):
            result: GuardVerdict = await self._check_batch(text)
        return result

    def check_health(self) -> None:
        """Serve's periodic health check."""


class RetrieverServer(KnowledgeBaseService):
    """Tenant knowledge bases: MiniLM + FAISS, the SQL catalogue, ingestion with PII checks.

    Every public method of ``KnowledgeBaseService`` is a deployment method. At start the
    replica ingests the seed knowledge bases that do not exist yet (``retrieval.seed``).
    """

    async def __init__(self, settings: Settings, pii: Any) -> None:  # type: ignore[misc]
        configure_logging(settings.telemetry)
        configure_tracing(settings.telemetry, component="retriever")
        from models.encoder import SentenceEncoder
        from serving.clients import HandleSpanFinder

        retrieval = settings.retrieval
        store = ModelStore(settings.paths.model_store)
        name = retrieval.encoder_store_name
        entry = store.verify([name])[name]
        encoder = SentenceEncoder(entry.folder(store.root), threads=1)
        encoder.load()
        db = Database.from_settings(settings)
        async with db.reading() as connection:
            await check_schema(connection)
        super().__init__(
            db,
            encoder,
            encoder_id=f"{name}@{entry.version}",
            root=settings.paths.data_dir / "knowledge",
            settings=retrieval,
            finder=HandleSpanFinder(pii, retrieval.ignore_pii_types),
        )
        seeded = await self.seed(retrieval.seed)
        _log.info("retriever ready", extra={"seeded": seeded})

    async def retrieve(
        self,
        tenant: str,
        name: str,
        query: str,
        *,
        k: int,
        min_score: float,
        embedding: bytes = b"",
        embedding_model: str = "",
        trace_context: dict[str, str] | None = None,
    ) -> RetrievalResult:
        """``KnowledgeBaseService.retrieve`` inside the caller's trace."""
        with extracted(trace_context), span("retrieval.search", {"enclave.k": k}) as current:
            result = await super().retrieve(
                tenant,
                name,
                query,
                k=k,
                min_score=min_score,
                embedding=embedding,
                embedding_model=embedding_model,
            )
            current.set_attribute("enclave.embedding_reused", bool(embedding))
            current.set_attribute("enclave.chunks", len(result.sources))
        return result


class APIIngress:
    """The Litestar API, built inside the replica (a Litestar app does not pickle)."""

    def __init__(  # noqa: PLR0917 - Serve's bind() passes the handles positionally
        self,
        settings: Settings,
        primary: Any,
        fallback: Any | None,
        pii: Any,
        guard: Any,
        retriever: Any | None,
    ) -> None:
        configure_logging(settings.telemetry)
        configure_tracing(settings.telemetry, component="api")
        self._settings = settings
        self._primary = primary
        self._fallback = fallback
        self._pii = pii
        self._guard = guard
        self._retriever = retriever

    async def __serve_build_asgi_app__(self) -> Any:
        from prometheus_client import CollectorRegistry

        from api.app import create_app
        from api.services import Services
        from api.stores.history import ConversationStore
        from api.stores.vault_keys import HistoryKeyring
        from core.audit import AuditLog
        from core.metrics import EnclaveMetrics
        from models.pii.pattern_scanner import PatternScanner
        from serving.clients import (
            HandleGuardClient,
            HandleKnowledgeService,
            HandleLLMClient,
            TemplateTokenizer,
        )
        from serving.ops.alert_webhook import WebhookNotifier
        from serving.ops.checkpoint_webhook import WebhookCheckpoints
        from serving.runtime_env import ensure_canary_token
        from serving.security import build_security
        from serving.serve_status import ServeStackInspector

        settings = self._settings
        store = ModelStore(settings.paths.model_store)
        primary_dir = store.path_of(settings.llm.primary.store_name)
        registry = CollectorRegistry()
        metrics = EnclaveMetrics(
            registry,
            entity_types=[*settings.pii.entities, *(p.entity for p in settings.pii.patterns)],
        )
        primary = await HandleLLMClient.connect(self._primary, name="primary", metrics=metrics)
        fallback = (
            await HandleLLMClient.connect(self._fallback, name="fallback", metrics=metrics)
            if self._fallback is not None
            else None
        )
        db = Database.from_settings(settings)
        async with db.reading() as connection:
            await check_schema(connection)
        services = Services(
            settings=settings,
            config_version=config_version(settings),
            primary=primary,
            fallback=fallback,
            tokenizer=TemplateTokenizer.from_folder(primary_dir),
            guard=HandleGuardClient(self._pii, self._guard),
            output_scanner=PatternScanner(settings.pii),
            canary_token=ensure_canary_token(settings.paths.data_dir),
            security=build_security(settings, db, registry),
            database=db,
            audit=AuditLog.from_settings(settings),
            history=ConversationStore(db, HistoryKeyring.from_settings(settings)),
            metrics=metrics,
            knowledge=(
                HandleKnowledgeService(self._retriever) if self._retriever is not None else None
            ),
            stack=ServeStackInspector(settings.paths.model_store),
        )
        if settings.canary.enabled:
            # The canary runs beside the API and records each run in the database; every API
            # replica's /metrics exports the latest recorded result.
            from serving.ops.canary_schedule import start_canary_when_ready

            self._canary_stop = start_canary_when_ready(
                settings, f"http://127.0.0.1:{settings.api.port}"
            )
        # The alert webhook also receives the audit chain's signed head checkpoints.
        checkpoints = WebhookCheckpoints(WebhookNotifier(settings.alerts))
        return create_app(services, echo_request_id_header=False, checkpoint_sinks=[checkpoints])


def llm_deployment(name: str, model: LLMModelSettings) -> Any:
    """The Serve deployment for one model, with its resources, scaling and routing from settings."""
    resources = model.resources
    options = _scaling_options(
        resources.num_replicas,
        resources.autoscaling,
        resources.placement,
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus,
    )
    if model.routing == "prefix_affinity":
        options["request_router_config"] = {
            "request_router_class": "serving.routing:ChatPrefixAffinityRouter"
        }
    return serve.deployment(
        LLMServer,
        name=name,
        max_ongoing_requests=resources.max_ongoing_requests,
        max_queued_requests=resources.max_queued_requests,
        health_check_period_s=10,
        health_check_timeout_s=30,
        graceful_shutdown_timeout_s=5,
        **options,
    )


def model_deployment(cls: type, name: str, resources: DeploymentResources) -> Any:
    """A Serve deployment for a small model server, with its resources from settings."""
    return serve.deployment(
        cls,
        name=name,
        max_ongoing_requests=resources.max_ongoing_requests,
        max_queued_requests=resources.max_queued_requests,
        graceful_shutdown_timeout_s=5,
        **_scaling_options(
            resources.num_replicas,
            resources.autoscaling,
            resources.placement,
            num_cpus=resources.num_cpus,
            num_gpus=resources.num_gpus,
        ),
    )


def api_deployment(settings: Settings) -> Any:
    """The Serve ingress deployment for the Litestar API."""
    api = settings.api
    return serve.deployment(
        serve.ingress()(APIIngress),
        name="api",
        max_ongoing_requests=api.max_ongoing_requests,
        graceful_shutdown_timeout_s=5,
        **_scaling_options(
            api.num_replicas, api.autoscaling, api.placement, num_cpus=api.num_cpus, num_gpus=0.0
        ),
    )


def _scaling_options(
    num_replicas: int,
    autoscaling: AutoscalingSettings,
    placement: PlacementSettings,
    *,
    num_cpus: float,
    num_gpus: float,
) -> dict[str, Any]:
    """Replica count or autoscaling, and actor resources, as ``serve.deployment`` takes them."""
    actor_options: dict[str, Any] = {"num_cpus": num_cpus}
    if num_gpus:
        actor_options["num_gpus"] = num_gpus
    if placement.custom_resources:
        actor_options["resources"] = dict(placement.custom_resources)
    options: dict[str, Any] = {"ray_actor_options": actor_options}
    if autoscaling.enabled:
        # Serve refuses a fixed num_replicas beside an autoscaling config.
        options["autoscaling_config"] = autoscaling.serve_config()
    else:
        options["num_replicas"] = num_replicas
    if placement.max_replicas_per_node is not None:
        options["max_replicas_per_node"] = placement.max_replicas_per_node
    return options
