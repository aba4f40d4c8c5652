"""``/v1/admin/api-keys``: issue, list and revoke API keys (platform admins)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, delete, get, post

from api.security import ApiKeyRecord, Principal, Role, issue_api_key
from api.services import Services
from api.stores.audit_trail import AuditTrail
from api.stores.lifecycle import erase_subject
from core.errors import InvalidRequest, NotFound

__all__ = ["ApiKeyController", "ApiKeyCreate", "erase_person"]

_TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/admin/api-keys`` body."""

    name: str
    tenant: str
    roles: list[Role]
    expires_at: datetime | None = None


def _shown(record: ApiKeyRecord) -> dict[str, Any]:
    """A key as listed: never its hash."""
    return {
        "key_id": record.key_id,
        "name": record.name,
        "tenant": record.tenant,
        "roles": sorted(record.roles),
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


class ApiKeyController(Controller):
    """API keys for service accounts, the canary and administrators."""

    path = "/v1/admin/api-keys"
    tags = ["admin"]  # noqa: RUF012 - Litestar reads this class attribute

    @post("/", status_code=201, summary="Issue an API key (shown once)")
    async def create(
        self,
        data: ApiKeyCreate,
        principal: Principal,
        services: Services,
        audit_trail: AuditTrail,
    ) -> dict[str, Any]:
        """A new key scoped to a tenant and roles; the response is the only time it is shown."""
        problems = []
        if not 1 <= len(data.name.strip()) <= 100:
            problems.append("name: 1-100 characters")
        if not _TENANT.fullmatch(data.tenant):
            problems.append("tenant: 1-64 letters, digits, '.', '_' or '-'")
        if not data.roles:
            problems.append("roles: give at least one role")
        expires = data.expires_at
        if expires is not None:
            if expires.tzinfo is None:
                problems.append("expires_at: include a time zone, e.g. 2027-01-01T00:00:00Z")
            elif expires <= datetime.now(UTC):
                problems.append("expires_at: must lie in the future")
        if problems:
            raise InvalidRequest("The API key request is not valid: " + "; ".join(problems) + ".")
        security = services.security
        issued = issue_api_key(
            tenant=data.tenant,
            roles=data.roles,
            name=data.name.strip(),
            prefix=services.settings.auth.api_keys.prefix,
            pepper=security.api_key_pepper,
            expires_at=expires,
        )
        await security.api_keys.add(issued.record, created_by=principal.subject)
        shown = _shown(issued.record)
        await audit_trail.action(principal, "api_key.created", **shown)
        return {**shown, "api_key": issued.plaintext}

    @get("/", summary="List API keys (never their secrets)")
    async def list_keys(self, services: Services, tenant: str | None = None) -> dict[str, Any]:
        """Every key, or one tenant's; secrets and hashes are never shown."""
        records = await services.security.api_keys.list_keys(tenant)
        return {"data": [_shown(r) for r in records]}

    @delete("/{key_id:str}", status_code=204, summary="Revoke an API key")
    async def revoke(
        self, key_id: str, principal: Principal, services: Services, audit_trail: AuditTrail
    ) -> None:
        """The key stops working at once; its record stays for the audit trail."""
        if not await services.security.api_keys.revoke(key_id, datetime.now(UTC)):
            raise NotFound(f"No API key {key_id!r}. GET /v1/admin/api-keys lists them.")
        await audit_trail.action(principal, "api_key.revoked", key_id_revoked=key_id)


@delete(
    "/v1/admin/subjects/{subject:str}",
    status_code=200,
    tags=["admin"],
    summary="Erase a person's data (conversations, uploaded documents)",
)
async def erase_person(
    subject: str, tenant: str, principal: Principal, services: Services
) -> dict[str, Any]:
    """Their conversations and the documents they uploaded (and those documents' vectors)
    are deleted, and their history data key is destroyed, so that copies of their encrypted
    placeholder vaults (backups) no longer open (docs/operations.md, "History vault keys");
    the audit log keeps PII-free records and an ``erasure`` record of this."""
    if not _TENANT.fullmatch(tenant) or not 1 <= len(subject) <= 128:
        raise InvalidRequest("Give the person's pseudonymous subject id and their tenant.")
    return await erase_subject(services, principal, tenant, subject)
