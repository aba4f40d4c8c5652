"""Who is calling: the authenticated :class:`Principal` and the roles Enclave knows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from api.security.errors import Forbidden
from core.settings import ROLE_NAMES, RoleName

__all__ = ["ROLES", "AuthMethod", "Principal", "Role", "oidc_subject", "require_role"]

Role = RoleName
"""``staff`` chats; ``tenant_admin`` manages a tenant; ``auditor`` reads the audit log;
``platform_admin`` runs the installation."""

ROLES: tuple[Role, ...] = ROLE_NAMES

AuthMethod = Literal["oidc", "api_key"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``subject`` is pseudonymous: never an email or a raw IdP id."""

    subject: str
    tenant: str
    roles: frozenset[Role]
    auth_method: AuthMethod
    key_id: str | None = None

    def has_role(self, *roles: Role) -> bool:
        """Whether the caller holds at least one of ``roles``."""
        return not self.roles.isdisjoint(roles)


def oidc_subject(issuer: str, user_id: str) -> str:
    """The pseudonymous subject of an OIDC user: sha256 over issuer and user id."""
    # The NUL separator keeps ("ab", "c") and ("a", "bc") apart.
    digest = hashlib.sha256(f"{issuer}\x00{user_id}".encode()).hexdigest()
    return f"u_{digest[:40]}"


def require_role(principal: Principal, *allowed: Role) -> None:
    """Raise :class:`Forbidden` unless ``principal`` holds one of ``allowed``."""
    if not principal.has_role(*allowed):
        wanted = " or ".join(sorted(allowed))
        msg = f"This action needs the role {wanted}; ask your tenant admin to grant it."
        raise Forbidden(msg)
