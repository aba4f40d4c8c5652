"""What one chat request runs under: its prompt, its tenant's runtime configuration, and its
rollout cohort — decided once, before any stage runs, and recorded in the lineage."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from api.stores.prompt_registry import PromptRegistry
from api.stores.runtime_config import RuntimeConfigStore
from core.errors import NotFound
from core.prompts import EffectivePrompt
from core.runtime_overrides import EffectiveRuntime, cohort

__all__ = ["Planner", "RequestPlan"]

_log = logging.getLogger("enclave.plan")

Cohort = Literal["canary", "stable"]


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """The prompt, runtime configuration and cohort of one request."""

    prompt: EffectivePrompt
    runtime: EffectiveRuntime
    config_version: str
    tenant: str
    cohort: Cohort | None = None
    language: str | None = None

    def prompt_values(self, documents: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The builtin variables the prompt's templates are rendered with."""
        return {
            "documents": documents or [],
            "today": datetime.now(UTC).date().isoformat(),
            "tenant": self.tenant,
            "language": self.language or "en",
        }

    def lineage(self) -> dict[str, Any]:
        """What the lineage records of the plan."""
        return {
            "prompt_version": self.prompt.version,
            "prompt_chain": list(self.prompt.chain),
            "config_version": self.config_version,
            "cohort": self.cohort,
            "language": self.language,
        }


class Planner:
    """Builds each request's plan from the prompt registry and the runtime configuration."""

    def __init__(
        self,
        prompts: PromptRegistry,
        runtime_config: RuntimeConfigStore,
        settings_version: str,
        *,
        prompt_name: str = "chat",
    ) -> None:
        self.prompts = prompts
        self.runtime_config = runtime_config
        self._settings_version = settings_version
        self._prompt_name = prompt_name

    async def runtime(self, tenant: str) -> EffectiveRuntime:
        """The tenant's runtime configuration now."""
        return await self.runtime_config.effective(tenant)

    async def plan(
        self,
        *,
        tenant: str,
        subject: str,
        client: str | None,
        language: str | None,
        runtime: EffectiveRuntime,
        prompt: EffectivePrompt | None = None,
    ) -> RequestPlan:
        """The plan of a request by ``subject``; ``prompt`` forces a prompt (a suite run)."""
        group: Cohort | None = None
        rollout = runtime.rollout
        if prompt is None and rollout is not None and rollout.percent > 0:
            group = cohort(tenant, subject, rollout.percent)
            if group == "canary":
                if rollout.prompt_version:
                    prompt = await self._trial(tenant, rollout.prompt_version)
                if rollout.engine is not None:
                    runtime = replace(runtime, engine=rollout.engine)
        if prompt is None:
            prompt = await self.prompts.effective(self._prompt_name, tenant, client)
        return RequestPlan(
            prompt=prompt,
            runtime=runtime,
            config_version=f"{self._settings_version}.{runtime.version}",
            tenant=tenant,
            cohort=group,
            language=language,
        )

    async def _trial(self, tenant: str, version_id: str) -> EffectivePrompt | None:
        try:
            return await self.prompts.trial(self._prompt_name, tenant, version_id)
        except NotFound:
            # A rollout naming a version that is gone: serve the active prompt, say so once
            # per refresh in the log (the config API validates the id when it is saved).
            _log.warning(
                "rollout names an unknown prompt version; serving the active prompt",
                extra={"tenant": tenant, "prompt_version": version_id},
            )
            return None
