"""``create_app(services)``: the Litestar application, built from the services it composes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from litestar import Litestar, Request
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin

from api.access import Gatekeeper, principal_of, rate_limit_headers
from api.chat import ChatPipeline, ChatService
from api.chat.prompt_checks import SuiteRunner
from api.chat.request_plan import Planner
from api.errors import exception_handlers
from api.openapi_docs import document_problem_responses
from api.request_body import JsonRequest
from api.request_ids import echo_request_id
from api.routes import (
    ApiKeyController,
    AuditController,
    ChatController,
    ConversationController,
    KnowledgeBaseController,
    erase_person,
    healthz,
    info,
    list_models,
    me,
    my_usage,
    readyz,
    stack_status,
)
from api.routes.config import RuntimeConfigController
from api.routes.evals import EvalController
from api.routes.feedback import FeedbackController
from api.routes.metrics import metrics_route, record_http
from api.routes.portal import PortalController
from api.routes.profile import ProfileController
from api.routes.prompts import PromptController
from api.security import Principal
from api.security.headers import cors_config, security_headers
from api.services import Services
from api.stores.audit_checkpoints import CheckpointJob
from api.stores.audit_trail import AuditTrail
from api.stores.lifecycle import RetentionJob
from api.stores.prompt_registry import PromptRegistry, repo_layers
from api.stores.quality import QualityStore
from api.stores.runtime_config import RuntimeConfigStore
from core.audit import CheckpointFile, CheckpointLog, CheckpointSink
from core.errors import ConfigurationError
from core.metrics import CanaryResults
from core.prompts import load_suites

__all__ = ["create_app"]


def create_app(
    services: Services,
    *,
    echo_request_id_header: bool = True,
    checkpoint_sinks: Sequence[CheckpointSink] = (),
) -> Litestar:
    """Build the API; every dependency is given, nothing is created at import time.

    Behind the Ray Serve proxy, ``echo_request_id_header`` is off: the proxy already puts
    the request id it passed in (``X-Request-ID``) on the response. ``checkpoint_sinks``:
    where audit head checkpoints go besides the checkpoint file and the log stream (the
    composition root adds the alert webhook).
    """
    started_at = int(time.time())
    settings = services.settings
    prompt_settings = settings.prompts
    layers = repo_layers(prompt_settings.directory)
    if prompt_settings.chat_prompt not in layers:
        msg = (
            f"prompts.chat_prompt: no prompt {prompt_settings.chat_prompt!r} in "
            f"{prompt_settings.directory} (found: {', '.join(sorted(layers)) or 'none'})"
        )
        raise ConfigurationError(msg)
    prompts = PromptRegistry(services.database, layers, refresh_s=prompt_settings.refresh_s)
    runtime_config = RuntimeConfigStore(
        services.database, settings, refresh_s=prompt_settings.refresh_s
    )
    planner = Planner(
        prompts, runtime_config, services.config_version, prompt_name=prompt_settings.chat_prompt
    )
    pipeline = ChatPipeline(services)
    quality = QualityStore(services.database)
    suite_runner = SuiteRunner(
        pipeline, planner, load_suites(prompt_settings.directory / "suites"), settings.api
    )

    def _const(value: Any) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    def _principal(request: Request[Any, Any, Any]) -> Principal:
        return principal_of(request.scope)

    security = services.security
    audit_trail = AuditTrail(services.database, services.audit)
    retention = RetentionJob(services)
    audit_settings = settings.audit
    checkpoints = CheckpointJob(
        services.database,
        services.audit,
        [
            CheckpointFile(audit_settings.checkpoint_path(settings.paths.data_dir)),
            CheckpointLog(),
            *checkpoint_sinks,
        ],
        interval_s=audit_settings.checkpoint_interval_s,
    )
    hooks = [security_headers, rate_limit_headers]
    if echo_request_id_header:
        hooks.insert(0, echo_request_id)
    app = Litestar(
        route_handlers=[
            ChatController,
            ConversationController,
            AuditController,
            KnowledgeBaseController,
            ApiKeyController,
            list_models,
            healthz,
            readyz,
            info,
            stack_status,
            me,
            my_usage,
            erase_person,
            metrics_route(
                services.metrics.registry,
                canary=CanaryResults(services.database, services.metrics.registry),
            ),
            PortalController,
            PromptController,
            RuntimeConfigController,
            FeedbackController,
            EvalController,
            ProfileController,
        ],
        guards=[
            Gatekeeper(security.authenticator, security.rate_limiter, audit_trail, services.metrics)
        ],
        cors_config=cors_config(settings.api.cors_origins),
        dependencies={
            "principal": Provide(_principal, sync_to_thread=False),
            "services": _const(services),
            "history": _const(services.history),
            "audit_trail": _const(audit_trail),
            "pipeline": _const(pipeline),
            "planner": _const(planner),
            "prompts": _const(prompts),
            "runtime_config": _const(runtime_config),
            "suite_runner": _const(suite_runner),
            "quality": _const(quality),
            "chat_service": _const(
                ChatService(pipeline=pipeline, planner=planner, services=services, quality=quality)
            ),
            "api_settings": _const(settings.api),
            "config_version": _const(services.config_version),
            "started_at": _const(started_at),
        },
        before_send=hooks,
        exception_handlers=exception_handlers,
        request_class=JsonRequest,
        request_max_body_size=settings.api.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Enclave API",
            version="0.1.0",
            description="OpenAI-compatible chat over self-hosted models.",
            path="/schema",
            # JSON/YAML only: the HTML renderers load their scripts from a CDN.
            render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()],
        ),
        debug=False,
        on_startup=[
            security.quotas.start,
            checkpoints.start,
            *([retention.start] if services.settings.retention.history_days else []),
        ],
        on_shutdown=[retention.stop, checkpoints.stop, security.quotas.stop],
    )
    document_problem_responses(app)
    record_http(app, services.metrics)  # last: it declares every route of the app
    return app
