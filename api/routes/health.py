"""Probes and build information: ``/healthz``, ``/readyz``, ``/v1/info``, and the operator's
``/v1/admin/status``."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response, get

from api.services import Services
from api.stack_status import engines_of, stack_report

__all__ = ["healthz", "info", "readyz", "stack_status"]


@get("/healthz", tags=["health"], summary="Liveness: the API process answers")
async def healthz() -> dict[str, str]:
    """Always 200 while the process runs."""
    return {"status": "ok"}


async def _check(name: str, probe: Any, deadline_s: float) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe(), timeout=deadline_s)
    except TimeoutError:
        return name, f"no answer within {deadline_s:g}s"
    except Exception as exc:
        return name, f"unhealthy: {type(exc).__name__}"
    return name, "ok"


@get("/readyz", tags=["health"], summary="Readiness: every deployment answers")
async def readyz(services: Services) -> Response[dict[str, Any]]:
    """200 only when every model deployment answers its health check in time."""
    timeout = services.settings.api.readiness_timeout_s
    probes = [("llm_primary", services.primary.check_health)]
    if services.fallback is not None:
        probes.append(("llm_fallback", services.fallback.check_health))
    probes.append(("guards", services.guard.check_health))
    if services.knowledge is not None:
        probes.append(("retriever", services.knowledge.check_health))
    results = dict(await asyncio.gather(*(_check(n, p, timeout) for n, p in probes)))
    ready = all(v == "ok" for v in results.values())
    return Response(
        content={"status": "ready" if ready else "not ready", "checks": results},
        status_code=200 if ready else 503,
        headers={} if ready else {"Retry-After": "5"},
    )


@get("/v1/info", tags=["health"], summary="Version, config version and engines")
async def info(services: Services) -> dict[str, Any]:
    """What is running: the config version, profile and the engines behind each model."""
    from importlib.metadata import version

    return {
        "version": version("enclave"),
        "config_version": services.config_version,
        "profile": services.settings.profile,
        # Auditors pin this key when they check exported bundles offline.
        "audit_key_id": services.audit.signer.key_id,
        "engines": await engines_of(services),
    }


@get(
    "/v1/admin/status",
    tags=["admin"],
    summary="What runs: deployments and replicas, models, config version, stores, canary",
)
async def stack_status(services: Services) -> dict[str, Any]:
    """The operator's view of the running stack (``enclave status`` renders it)."""
    return await stack_report(services)
