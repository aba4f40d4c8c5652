"""``/v1/config``: runtime configuration versions — show, save, list, activate or roll back.

Tenant admins act on their own tenant; platform admins on any tenant (``?tenant=<id>``) or
on the level above every tenant (``?tenant=*``). Every change is audited.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Controller, get, post, put

from api.chat.guarding import scrub_free_text
from api.security import Forbidden, Principal
from api.services import Services
from api.stores.audit_trail import AuditTrail
from api.stores.runtime_config import GLOBAL, RuntimeConfigStore
from core.errors import InvalidRequest
from core.runtime_overrides import validate_overrides

__all__ = ["ConfigActivate", "ConfigUpdate", "RuntimeConfigController"]

_NOTE_MAX = 500


class ConfigUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/config`` body: the overrides document and why it changes."""

    overrides: dict[str, Any]
    note: str


class ConfigActivate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/config/versions/{number}/activate`` body (optional)."""

    note: str = ""


def _target(principal: Principal, tenant: str | None) -> str:
    """The tenant the call acts on: the caller's own unless a platform admin names another."""
    if tenant is None or tenant == principal.tenant:
        return principal.tenant
    if principal.has_role("platform_admin"):
        return tenant
    msg = (
        f"Tenant admins manage their own tenant's configuration ({principal.tenant!r}); "
        "leave out ?tenant= or ask a platform admin."
    )
    raise Forbidden(msg)


async def _scrubbed_note(services: Services, note: str) -> str:
    """The note with personal data replaced by placeholders (it is stored and audited)."""
    note = note.strip()
    if len(note) > _NOTE_MAX:
        msg = f"note: at most {_NOTE_MAX} characters (got {len(note)})."
        raise InvalidRequest(msg)
    if not note:
        return note
    return await scrub_free_text(services.guard, note, services.metrics)


class RuntimeConfigController(Controller):
    """Runtime configuration of a tenant (or of every tenant, ``'*'``)."""

    path = "/v1/config"
    tags = ["configuration"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="Show the effective runtime configuration")
    async def show(
        self,
        principal: Principal,
        runtime_config: RuntimeConfigStore,
        services: Services,
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """What the tenant's requests run under now, the active version numbers of the
        global level and the tenant, and their override documents."""
        target = _target(principal, tenant)
        global_number, global_document = await runtime_config.active_document(GLOBAL)
        own_number: int | None = None
        own_document: dict[str, Any] | None = None
        if target != GLOBAL:
            own_number, own_document = await runtime_config.active_document(target)
        # Look at the database now: an admin expects to see the change they just made,
        # even one made through another replica.
        runtime_config.invalidate()
        effective = await runtime_config.effective(target)
        return {
            "tenant": target,
            "effective": effective.as_dict(),
            "settings_version": services.config_version,
            "active": {"global": global_number, "tenant": own_number},
            "overrides": {"global": global_document, "tenant": own_document},
        }

    @put("/", status_code=201, summary="Save and activate a new configuration version")
    async def update(
        self,
        *,
        data: ConfigUpdate,
        principal: Principal,
        runtime_config: RuntimeConfigStore,
        services: Services,
        audit_trail: AuditTrail,
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """Validate the overrides, store them as the tenant's next version and activate it;
        every replica applies it within seconds, without restart."""
        target = _target(principal, tenant)
        # Validated here first too: a wrong document is reported before the note is scanned.
        stored = validate_overrides(data.overrides, services.settings).model_dump(
            mode="json", exclude_none=True
        )
        if not data.note.strip():
            raise InvalidRequest("note: say in a few words why the configuration changes.")
        note = await _scrubbed_note(services, data.note)
        number = await runtime_config.create_version(
            target, data.overrides, note=note, actor=principal.subject
        )
        await audit_trail.action(
            principal,
            "config.version_created",
            tenant_changed=target,
            number=number,
            overrides=stored,
            note=note,
        )
        effective = await runtime_config.effective(target)
        return {
            "tenant": target,
            "number": number,
            "version": effective.version,
            "effective": effective.as_dict(),
        }

    @get("/versions", summary="List configuration versions")
    async def list_versions(
        self,
        principal: Principal,
        runtime_config: RuntimeConfigStore,
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """The tenant's versions, newest first; ``active`` marks the one in use."""
        target = _target(principal, tenant)
        return {"tenant": target, "data": await runtime_config.versions(target)}

    @post(
        "/versions/{number:int}/activate",
        status_code=200,
        summary="Activate (or roll back to) a configuration version",
    )
    async def activate(
        self,
        *,
        number: int,
        principal: Principal,
        runtime_config: RuntimeConfigStore,
        services: Services,
        audit_trail: AuditTrail,
        data: ConfigActivate | None = None,
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """Make an earlier (or later) version the active one; 0 removes the overrides.

        Going to an older number than the active one is recorded as a rollback.
        """
        target = _target(principal, tenant)
        if number < 0:
            raise InvalidRequest(
                "number: give a version number from GET /v1/config/versions (0: no overrides)."
            )
        note = await _scrubbed_note(services, data.note if data is not None else "")
        current = await runtime_config.active_number(target)
        action: Literal["activate", "rollback"] = "rollback" if number < current else "activate"
        await runtime_config.activate(target, number, actor=principal.subject, action=action)
        document = await runtime_config.document(target, number) if number else {}
        details: dict[str, Any] = {"note": note} if note else {}
        await audit_trail.action(
            principal,
            "config.activated",
            tenant_changed=target,
            number=number,
            action=action,
            previous=current,
            overrides=document,
            **details,
        )
        effective = await runtime_config.effective(target)
        return {
            "tenant": target,
            "number": number,
            "action": action,
            "version": effective.version,
            "effective": effective.as_dict(),
        }
