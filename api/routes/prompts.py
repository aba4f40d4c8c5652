"""``/v1/prompts``: a tenant admin's prompt versions — create, list, diff, activate (gated by
the prompt's regression suites), roll back."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.params import Parameter

from api.chat.prompt_checks import SuiteRunner
from api.security import Principal
from api.stores.audit_trail import AuditTrail
from api.stores.prompt_registry import PromptRegistry, PromptVersion, scope_label
from core.errors import InvalidRequest, RegressionFailed
from core.prompts import PromptTemplate, diff

__all__ = ["PromptController", "PromptRollback", "PromptVersionCreate"]

_CLIENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class PromptVersionCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/prompts/{name}/versions`` body: the parts this level overrides."""

    parts: dict[str, str]
    variables: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    client: str | None = None
    note: str = ""


class PromptRollback(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/prompts/{name}/rollback`` body."""

    client: str | None = None


def _client(value: str | None) -> str:
    if value is None or value == "":
        return ""
    if not _CLIENT.match(value):
        raise InvalidRequest(
            "client: use 1-64 lower-case letters, digits, '-' or '_' (the application's name, "
            "as chat requests send it), or leave it out for the tenant's own level."
        )
    return value


def _note(value: str) -> str:
    note = value.strip()
    if len(note) > 500:
        raise InvalidRequest("note: at most 500 characters.")
    return note


class PromptController(Controller):
    """Versioned prompts of the caller's tenant and its clients."""

    path = "/v1/prompts"
    tags = ["prompts"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="The effective prompts of the tenant (or of one client)")
    async def effective(
        self, principal: Principal, prompts: PromptRegistry, client: str | None = None
    ) -> dict[str, Any]:
        """Each prompt as requests of the tenant run it now: merged parts and the chain."""
        scope = _client(client)
        data = []
        for name in prompts.names:
            prompt = await prompts.effective(name, principal.tenant, scope or None)
            data.append(
                {
                    "name": name,
                    "version": prompt.version,
                    "chain": list(prompt.chain),
                    **prompt.template.to_document(),
                }
            )
        return {"tenant": principal.tenant, "client": scope or None, "data": data}

    @get("/{name:str}/versions", summary="List a prompt's versions in the tenant")
    async def list_versions(
        self,
        name: str,
        principal: Principal,
        prompts: PromptRegistry,
        client: str | None = None,
    ) -> dict[str, Any]:
        """Newest first; ``client`` narrows to one client ("" is not allowed: omit it)."""
        versions = await prompts.versions(
            name, principal.tenant, _client(client) if client is not None else None
        )
        return {
            "global_version": prompts.global_layer(name).version_id,
            "data": [version.shown(active=active) for version, active in versions],
        }

    @post("/{name:str}/versions", status_code=201, summary="Create a prompt version")
    async def create_version(
        self,
        name: str,
        data: PromptVersionCreate,
        principal: Principal,
        prompts: PromptRegistry,
        audit_trail: AuditTrail,
    ) -> dict[str, Any]:
        """Stored inactive; templates are checked now (syntax, sandbox, declared variables)."""
        version = await prompts.create(
            name,
            principal.tenant,
            _client(data.client),
            {"parts": data.parts, "variables": data.variables},
            note=_note(data.note),
            actor=principal.subject,
        )
        await audit_trail.action(
            principal,
            "prompt.version_created",
            prompt=name,
            scope=scope_label(version.tenant, version.client),
            version_id=version.id,
            number=version.number,
            parts=sorted(version.template.parts),
        )
        return version.shown(active=False)

    @get("/{name:str}/versions/{version_id:str}", summary="Show one prompt version")
    async def show_version(
        self, name: str, version_id: str, principal: Principal, prompts: PromptRegistry
    ) -> dict[str, Any]:
        """The version's parts, variables, note and last suite result."""
        version = await prompts.get(name, principal.tenant, version_id)
        active = await prompts.active_version(name, version.tenant, version.client)
        return version.shown(active=active == version.id)

    @get("/{name:str}/diff", summary="Diff two versions of a prompt")
    async def diff_versions(
        self,
        name: str,
        principal: Principal,
        prompts: PromptRegistry,
        from_version: Annotated[str, Parameter(query="from")],
        to_version: Annotated[str, Parameter(query="to")],
    ) -> dict[str, Any]:
        """A unified diff; ``global`` names the repo's version of the prompt."""
        old = await self._template(name, from_version, principal, prompts)
        new = await self._template(name, to_version, principal, prompts)
        return {
            "from": from_version,
            "to": to_version,
            "diff": diff(old, new, from_version, to_version),
        }

    @staticmethod
    async def _template(
        name: str, version_id: str, principal: Principal, prompts: PromptRegistry
    ) -> PromptTemplate:
        if version_id == "global":
            return prompts.global_layer(name).template
        return (await prompts.get(name, principal.tenant, version_id)).template

    @post(
        "/{name:str}/versions/{version_id:str}/activate",
        status_code=200,
        summary="Activate a prompt version (after its regression suites pass)",
    )
    async def activate(
        self,
        name: str,
        version_id: str,
        *,
        principal: Principal,
        prompts: PromptRegistry,
        suite_runner: SuiteRunner,
        audit_trail: AuditTrail,
    ) -> dict[str, Any]:
        """Runs the prompt's suites against the real model with this version in place; a
        failing case refuses the activation (422, naming the cases); else it goes live."""
        version = await prompts.get(name, principal.tenant, version_id)
        candidate = await prompts.candidate(version)
        report = await suite_runner.run(
            name, candidate, tenant=principal.tenant, subject=principal.subject
        )
        await prompts.record_check(version.id, report.document())
        if not report.ok:
            await audit_trail.action(
                principal,
                "prompt.activation_refused",
                prompt=name,
                version_id=version.id,
                failed=[case["case"] for case in report.failed],
            )
            cases = "; ".join(
                f"{case['case']}: {', '.join(case['failures'])}" for case in report.failed
            )
            raise RegressionFailed(
                f"Version {version.number} of {name!r} was not activated: "
                f"{len(report.failed)} regression case(s) failed ({cases}). Fix the template "
                "and create a new version.",
                extra={"suite": report.document()},
            )
        await prompts.activate(version, actor=principal.subject)
        await audit_trail.action(
            principal,
            "prompt.activated",
            prompt=name,
            scope=scope_label(version.tenant, version.client),
            version_id=version.id,
            number=version.number,
            passed=len(report.passed),
            skipped=len(report.skipped),
        )
        return {"active": version.shown(active=True), "suite": report.document()}

    @post("/{name:str}/rollback", status_code=200, summary="Roll back to the previous version")
    async def rollback(
        self,
        name: str,
        principal: Principal,
        prompts: PromptRegistry,
        audit_trail: AuditTrail,
        data: PromptRollback | None = None,
    ) -> dict[str, Any]:
        """The version active before the current one comes back at once (it passed its
        suites when it was activated); with none before, the scope inherits again."""
        body = data or PromptRollback()
        scope = _client(body.client)
        prompts.global_layer(name)
        previous_id, restored_id = await prompts.rollback(
            name, principal.tenant, scope, actor=principal.subject
        )
        await audit_trail.action(
            principal,
            "prompt.rolled_back",
            prompt=name,
            scope=scope_label(principal.tenant, scope),
            from_version=previous_id,
            to_version=restored_id,
        )
        restored: PromptVersion | None = None
        if restored_id is not None:
            restored = await prompts.get(name, principal.tenant, restored_id)
        effective = await prompts.effective(name, principal.tenant, scope or None)
        return {
            "from": previous_id,
            "to": restored.shown(active=True) if restored else None,
            "effective_version": effective.version,
        }
