"""Each user's portal profile (display name, answer language, default knowledge base) in the
SQL store, and the rules a new profile must satisfy.

One row per tenant and pseudonymous user id in ``user_profiles``; a user with no row has the
defaults. The display name is personal data: it lives in this table only, and nothing here
logs it or hands it to the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from api.chat.validation import ANSWER_LANGUAGES, answer_language
from core.db import Database, user_profiles
from core.errors import InvalidRequest

__all__ = [
    "DEFAULT_LANGUAGE",
    "MAX_DISPLAY_NAME",
    "SUPPORTED_LANGUAGES",
    "Profile",
    "ProfileStore",
    "checked_profile",
]

MAX_DISPLAY_NAME = 100
DEFAULT_LANGUAGE = "en"
# The languages a chat may ask answers in (api.chat.validation): the profile offers the same.
SUPPORTED_LANGUAGES: tuple[str, ...] = ANSWER_LANGUAGES


@dataclass(frozen=True, slots=True)
class Profile:
    """A user's portal preferences."""

    display_name: str = ""
    language: str = DEFAULT_LANGUAGE
    default_knowledge_base: str | None = None
    updated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The profile as the API returns it."""
        stamped = self.updated_at
        if stamped is not None and stamped.tzinfo is None:
            stamped = stamped.replace(tzinfo=UTC)  # SQLite returns naive UTC times
        return {
            "display_name": self.display_name,
            "language": self.language,
            "default_knowledge_base": self.default_knowledge_base,
            "updated_at": None if stamped is None else stamped.isoformat().replace("+00:00", "Z"),
        }


def checked_profile(
    *,
    display_name: str,
    language: str,
    default_knowledge_base: str | None,
    knowledge_bases: Iterable[str],
) -> Profile:
    """A valid profile from a user's input, or ``InvalidRequest`` listing every problem.

    ``knowledge_bases`` are the names that exist in the user's tenant.
    """
    problems: list[str] = []
    name = display_name.strip()
    if len(name) > MAX_DISPLAY_NAME:
        problems.append(
            f"display_name is {len(name)} characters long; at most {MAX_DISPLAY_NAME} fit."
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        problems.append("display_name must not contain control characters (line breaks, tabs).")
    tag = answer_language(language)
    if tag is None:
        problems.append(
            f"language {language!r} is not supported; use one of: "
            + ", ".join(SUPPORTED_LANGUAGES)
            + " (a region such as de-CH is accepted)."
        )
    base = (default_knowledge_base or "").strip() or None
    if base is not None:
        existing = sorted(set(knowledge_bases))
        if base not in existing:
            known = ", ".join(existing) if existing else "none"
            problems.append(
                f"default_knowledge_base {base!r} is not a knowledge base of your tenant; "
                f"existing: {known}. Use null for the tenant's default."
            )
    if problems or tag is None:
        raise InvalidRequest(" ".join(problems), extra={"problems": problems})
    return Profile(name, tag, base)


class ProfileStore:
    """The profiles of every user, scoped by tenant and pseudonymous user id."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant: str, user_id: str) -> Profile:
        """The user's profile; the defaults when they have not saved one."""
        async with self._db.reading() as connection:
            row = (
                await connection.execute(
                    select(user_profiles).where(
                        user_profiles.c.tenant == tenant, user_profiles.c.user_id == user_id
                    )
                )
            ).first()
        if row is None:
            return Profile()
        return Profile(row.display_name, row.language, row.default_knowledge_base, row.updated_at)

    async def put(self, tenant: str, user_id: str, profile: Profile) -> Profile:
        """Save (create or replace) the user's profile; returns it as stored."""
        now = datetime.now(UTC)
        values = {
            "display_name": profile.display_name,
            "language": profile.language,
            "default_knowledge_base": profile.default_knowledge_base,
            "updated_at": now,
        }
        key = (user_profiles.c.tenant == tenant, user_profiles.c.user_id == user_id)
        async with self._db.transaction() as connection:
            # Update first, insert if there was nothing: portable across SQLite and
            # PostgreSQL without dialect-specific upserts; the primary key settles a race.
            changed = await connection.execute(update(user_profiles).where(*key).values(values))
            if changed.rowcount == 0:
                await connection.execute(
                    insert(user_profiles).values(tenant=tenant, user_id=user_id, **values)
                )
        return Profile(profile.display_name, profile.language, profile.default_knowledge_base, now)

    async def erase(self, tenant: str, user_id: str) -> bool:
        """Delete the user's profile (right to erasure); whether there was one."""
        async with self._db.transaction() as connection:
            result = await connection.execute(
                delete(user_profiles).where(
                    user_profiles.c.tenant == tenant, user_profiles.c.user_id == user_id
                )
            )
        return bool(result.rowcount)
