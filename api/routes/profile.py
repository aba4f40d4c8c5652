"""``/v1/me/profile``: the caller's portal profile — display name, the language answers are
written in, and the knowledge base new chats start with."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get, put

from api.security import Principal
from api.services import Services
from api.stores.profiles import ProfileStore, checked_profile
from core.errors import InvalidRequest

__all__ = ["ProfileController", "ProfileUpdate"]


class ProfileUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/me/profile`` body: the whole profile (a field left out takes its default)."""

    display_name: str = ""
    language: str = "en"
    default_knowledge_base: str | None = None


class ProfileController(Controller):
    """Every user reads and replaces only their own profile (tenant + pseudonymous id)."""

    path = "/v1/me/profile"
    tags = ["me"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="Your portal profile")
    async def read_profile(self, principal: Principal, services: Services) -> dict[str, Any]:
        """Display name, answer language and default knowledge base; defaults if never saved."""
        profile = await ProfileStore(services.database).get(principal.tenant, principal.subject)
        return profile.to_json()

    @put("/", summary="Save your portal profile")
    async def save_profile(
        self, data: ProfileUpdate, principal: Principal, services: Services
    ) -> dict[str, Any]:
        """Validated first: the name's length, a supported language, a knowledge base of
        your tenant that exists. Not audited: the display name is personal data."""
        wanted = (data.default_knowledge_base or "").strip()
        names: list[str] = []
        if wanted:
            if services.knowledge is None:
                msg = (
                    "Knowledge bases are turned off on this deployment; set "
                    "default_knowledge_base to null."
                )
                raise InvalidRequest(msg)
            names = [base.name for base in await services.knowledge.list_bases(principal.tenant)]
        profile = checked_profile(
            display_name=data.display_name,
            language=data.language,
            default_knowledge_base=data.default_knowledge_base,
            knowledge_bases=names,
        )
        stored = await ProfileStore(services.database).put(
            principal.tenant, principal.subject, profile
        )
        return stored.to_json()
