"""What runs, for the operator: ``GET /v1/admin/status``, which ``enclave status`` renders.

Through the running stack's own API, so that one command answers the same way embedded and
in a cluster (where the operator reaches the API, not Ray). The composition root hands in a
:class:`StackInspector` for what only it can see (Serve's deployments and replicas, the
model store's manifest); the rest comes from the settings and the SQL store. Nothing secret
leaves: store URLs lose their passwords, and the canary's row holds no PII.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.exc import SQLAlchemyError

from core.db.canary_schema import last_canary_run

if TYPE_CHECKING:
    from api.services import Services

__all__ = [
    "DeploymentState",
    "ModelVersion",
    "StackInspector",
    "engines_of",
    "redacted_url",
    "stack_report",
]


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """One Serve deployment: its status and how many replicas are in which state."""

    application: str
    name: str
    status: str
    replicas: dict[str, int] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One entry of the model store's manifest."""

    name: str
    kind: str
    version: str
    files: int
    source: str


class StackInspector(Protocol):
    """What the composition root can see of the running stack."""

    async def deployments(self) -> list[DeploymentState]:
        """Every deployment of the Serve applications, with replica counts by state."""

    def models(self) -> list[ModelVersion]:
        """The model store's manifest (read, not re-verified)."""


def redacted_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (user, host, port and path kept)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def engines_of(services: Services) -> dict[str, dict[str, Any]]:
    """The engine behind each model role, with the requests it is generating now."""
    clients = {"primary": services.primary}
    if services.fallback is not None:
        clients["fallback"] = services.fallback
    engines = {}
    for role, client in clients.items():
        info = client.info()
        engines[role] = {
            "engine": info.engine,
            "model": info.model,
            "max_model_len": info.max_model_len,
            "running_requests": await client.running_requests(),
            **info.extra,
        }
    return engines


async def _canary(services: Services) -> dict[str, Any]:
    document: dict[str, Any] = {"scheduled": services.settings.canary.enabled}
    try:
        async with services.database.reading() as connection:
            last = await last_canary_run(connection)
    except SQLAlchemyError as exc:
        # The report is what an operator reads when something is wrong: say so, go on.
        document["error"] = f"the SQL store did not answer ({type(exc).__name__})"
        return document
    document["last_run"] = (
        None
        if last is None
        else {
            "finished_at": last.finished_at.isoformat(),
            "ok": last.ok,
            "failed_step": last.failed_step,
            "duration_s": round(last.duration_s, 2),
        }
    )
    return document


def _stores(services: Services) -> dict[str, Any]:
    limits = services.settings.limits
    database = services.database
    stores: dict[str, Any] = {
        "database": {
            "backend": database.engine.dialect.name,
            "url": database.engine.url.render_as_string(hide_password=True),
        },
        "limits": {"backend": limits.store},
    }
    if limits.store == "redis" and limits.redis_url is not None:
        stores["limits"]["url"] = redacted_url(limits.redis_url)
    return stores


async def stack_report(services: Services) -> dict[str, Any]:
    """The whole report: version, config, deployments, models, engines, stores, canary.

    Without an inspector (an API built outside Serve, as in tests) the deployments and models
    are empty and ``deployments_visible`` is false.
    """
    from importlib.metadata import version

    settings = services.settings
    inspector = services.stack
    deployments = [] if inspector is None else await inspector.deployments()
    models = [] if inspector is None else inspector.models()
    in_use = {settings.llm.primary.store_name: ["primary"]}
    if settings.llm.fallback is not None:
        in_use.setdefault(settings.llm.fallback.store_name, []).append("fallback")
    return {
        "version": version("enclave"),
        "config_version": services.config_version,
        "profile": settings.profile,
        "deployments": [asdict(d) for d in deployments],
        "deployments_visible": inspector is not None,
        "models": [{**asdict(m), "serves": in_use.get(m.name, [])} for m in models],
        "engines": await engines_of(services),
        "stores": _stores(services),
        "canary": await _canary(services),
    }
