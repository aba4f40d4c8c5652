"""Runtime configuration versions in the database, and the snapshot chat reads them from.

Versions (``config_versions``) are numbered per tenant (``'*'``: every tenant); the active
one is named by the tenant's latest ``config_activations`` row (rows are only added, so the
history of switches stays readable). Each API replica keeps an in-memory snapshot of every
tenant's active document: a request costs no query while the snapshot is younger than
``refresh_s``; after that one cheap query (the newest activation id) tells whether anything
changed, and only then is the snapshot reloaded. A change written by one replica thereby
reaches the others within ``refresh_s``, without a restart. A database outage keeps the last
snapshot: chat goes on under the configuration it had (the mechanism, shared with the prompt
registry: ``api.stores.activation_snapshot``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import JSON, DateTime, String, and_, func, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.stores.activation_snapshot import ActivationSnapshot
from core.db import Database, as_utc, config_activations, config_versions, prompt_versions
from core.errors import Conflict, InvalidRequest, NotFound
from core.runtime_overrides import (
    EffectiveRuntime,
    RuntimeOverrides,
    effective_runtime,
    validate_overrides,
)
from core.settings import Settings

__all__ = ["GLOBAL", "RuntimeConfigStore"]

GLOBAL = "*"
"""The level above every tenant (platform admins)."""

_log = logging.getLogger("enclave.api.runtime_config")
_TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NOTE_MAX = 500  # config_versions.note
_ACTOR_MAX = 128  # config_versions.created_by
_NUMBER_MAX = 2**31 - 1  # config_versions.number is a 32-bit integer
_WRITE_ATTEMPTS = 5  # each collision has a winner: enough for a handful of admins


@dataclass(frozen=True, slots=True)
class _Level:
    number: int
    overrides: RuntimeOverrides | None


@dataclass(slots=True)
class _Snapshot:
    marker: int
    """The newest activation id seen; -1: nothing could be read yet."""
    levels: dict[str, _Level]
    effective: dict[str, EffectiveRuntime] = field(default_factory=dict)


def _check_tenant(tenant: str) -> None:
    if tenant != GLOBAL and not _TENANT.fullmatch(tenant):
        msg = f"tenant: give a tenant id (1-64 letters, digits, '.', '_' or '-') or {GLOBAL!r}."
        raise InvalidRequest(msg)


class RuntimeConfigStore:
    """Configuration versions per tenant: create, activate, list; the effective runtime."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        refresh_s: float = 2.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = database
        self._settings = settings
        self._snapshot = ActivationSnapshot(
            self._refresh,
            refresh_s=refresh_s,
            log=_log,
            what="runtime configuration",
            # Never read yet and the store fails: the settings alone.
            initial=_Snapshot(-1, {}),
            clock=clock,
        )

    async def effective(self, tenant: str) -> EffectiveRuntime:
        """What ``tenant``'s requests run under now (no query while the snapshot is fresh)."""
        snapshot = await self._snapshot.current()
        known = snapshot.effective.get(tenant)
        if known is not None:
            return known
        top = snapshot.levels.get(GLOBAL, _Level(0, None))
        own = snapshot.levels.get(tenant, _Level(0, None)) if tenant != GLOBAL else _Level(0, None)
        merged = effective_runtime(
            self._settings, top.overrides, top.number, own.overrides, own.number
        )
        snapshot.effective[tenant] = merged
        return merged

    def invalidate(self) -> None:
        """Make the next :meth:`effective` look at the database."""
        self._snapshot.invalidate()

    async def create_version(
        self, tenant: str, document: Mapping[str, Any], *, note: str, actor: str
    ) -> int:
        """Validate ``document``, store it as the tenant's next version and activate it, in
        one transaction; returns the new version's number."""
        _check_tenant(tenant)
        if len(note) > _NOTE_MAX:
            msg = f"note: at most {_NOTE_MAX} characters (got {len(note)})."
            raise InvalidRequest(msg)
        overrides = validate_overrides(document, self._settings)
        stored = overrides.model_dump(mode="json", exclude_none=True)
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                async with self._db.transaction() as connection:
                    # Writing first: on SQLite the write lock is then held from the start, so
                    # a concurrent writer waits instead of failing on a stale read snapshot.
                    number = await self._insert_next(connection, tenant, stored, note, actor)
                    await self._check_prompt_version(connection, tenant, overrides)
                    await self._record_activation(connection, tenant, number, actor, "activate")
            except IntegrityError:
                # A concurrent writer (PostgreSQL runs two INSERT ... SELECT max + 1 side by
                # side) took the same number: count again.
                if attempt == _WRITE_ATTEMPTS - 1:
                    msg = "Another configuration change was saved at the same time; try again."
                    raise Conflict(msg) from None
                continue
            self.invalidate()
            return number
        raise AssertionError("unreachable")  # pragma: no cover

    async def activate(
        self,
        tenant: str,
        number: int,
        *,
        actor: str,
        action: Literal["activate", "rollback"],
    ) -> None:
        """Make version ``number`` of ``tenant`` the active one (0: no overrides at all).

        The version is validated again first: settings may have changed since it was saved
        (a fallback engine removed, say), and a version is never applied unvalidated.
        """
        _check_tenant(tenant)
        async with self._db.transaction() as connection:
            if number > _NUMBER_MAX:  # cannot exist; and the activation row could not hold it
                await self._document(connection, tenant, number)
            # The activation row first (the write lock, on SQLite); an error below undoes it.
            await self._record_activation(connection, tenant, number or None, actor, action)
            if number != 0:
                document = await self._document(connection, tenant, number)
                try:
                    overrides = validate_overrides(document, self._settings)
                except InvalidRequest as exc:
                    msg = (
                        f"Version {number} no longer fits this deployment's settings and "
                        f"cannot be activated. {exc.detail} Save a corrected version instead."
                    )
                    raise InvalidRequest(msg, extra=exc.extra) from None
                await self._check_prompt_version(connection, tenant, overrides)
        self.invalidate()

    async def versions(self, tenant: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The tenant's versions, newest first, each with whether it is the active one."""
        _check_tenant(tenant)
        async with self._db.reading() as connection:
            active = await self._active_number(connection, tenant)
            rows = (
                await connection.execute(
                    select(
                        config_versions.c.number,
                        config_versions.c.document,
                        config_versions.c.note,
                        config_versions.c.created_by,
                        config_versions.c.created_at,
                    )
                    .where(config_versions.c.tenant == tenant)
                    .order_by(config_versions.c.number.desc())
                    .limit(limit)
                )
            ).all()
        return [
            {
                "number": row.number,
                "document": row.document,
                "note": row.note,
                "created_by": row.created_by,
                "created_at": as_utc(row.created_at).isoformat(),
                "active": row.number == active,
            }
            for row in rows
        ]

    async def active_number(self, tenant: str) -> int:
        """The number of the tenant's active version, read from the database (0: none)."""
        _check_tenant(tenant)
        async with self._db.reading() as connection:
            return await self._active_number(connection, tenant)

    async def active_document(self, tenant: str) -> tuple[int, dict[str, Any]]:
        """The tenant's active version number and its document (``(0, {})``: none)."""
        _check_tenant(tenant)
        async with self._db.reading() as connection:
            number = await self._active_number(connection, tenant)
            if number == 0:
                return 0, {}
            return number, await self._document(connection, tenant, number)

    async def document(self, tenant: str, number: int) -> dict[str, Any]:
        """The document of one version; :class:`NotFound` if there is none."""
        _check_tenant(tenant)
        async with self._db.reading() as connection:
            return await self._document(connection, tenant, number)

    async def _refresh(self, snapshot: _Snapshot | None) -> _Snapshot:
        async with self._db.reading() as connection:
            marker = await connection.scalar(select(func.max(config_activations.c.id)))
            marker = int(marker or 0)
            if snapshot is not None and snapshot.marker == marker:
                return snapshot
            return await self._load(connection)

    async def _load(self, connection: AsyncConnection) -> _Snapshot:
        latest = (
            select(
                config_activations.c.tenant,
                func.max(config_activations.c.id).label("id"),
            )
            .group_by(config_activations.c.tenant)
            .subquery()
        )
        rows = (
            await connection.execute(
                select(
                    config_activations.c.id,
                    config_activations.c.tenant,
                    config_activations.c.number,
                    config_versions.c.document,
                )
                .join(latest, config_activations.c.id == latest.c.id)
                .outerjoin(
                    config_versions,
                    and_(
                        config_versions.c.tenant == config_activations.c.tenant,
                        config_versions.c.number == config_activations.c.number,
                    ),
                )
            )
        ).all()
        levels: dict[str, _Level] = {}
        for row in rows:
            if row.number is None or row.document is None:
                continue
            try:
                overrides = RuntimeOverrides.model_validate(row.document)
            except ValidationError:
                # Stored documents were validated on save; one that no longer parses (an
                # older schema) is skipped rather than taking chat down.
                _log.warning(
                    "stored runtime configuration skipped: it no longer validates",
                    extra={"tenant": row.tenant, "number": row.number},
                )
                continue
            levels[row.tenant] = _Level(int(row.number), overrides)
        marker = max((int(row.id) for row in rows), default=0)
        return _Snapshot(marker, levels)

    @staticmethod
    async def _insert_next(
        connection: AsyncConnection,
        tenant: str,
        document: dict[str, Any],
        note: str,
        actor: str,
    ) -> int:
        """Insert the tenant's next version, numbered in the same statement; its number."""
        values = select(
            literal(tenant, String()).label("tenant"),
            (func.coalesce(func.max(config_versions.c.number), 0) + 1).label("number"),
            literal(document, JSON()).label("document"),
            literal(note, String()).label("note"),
            literal(actor[:_ACTOR_MAX], String()).label("created_by"),
            literal(datetime.now(UTC), DateTime(timezone=True)).label("created_at"),
        ).where(config_versions.c.tenant == tenant)
        columns = ["tenant", "number", "document", "note", "created_by", "created_at"]
        inserted = await connection.execute(
            insert(config_versions).from_select(columns, values).returning(config_versions.c.number)
        )
        return int(inserted.scalar_one())

    @staticmethod
    async def _document(connection: AsyncConnection, tenant: str, number: int) -> dict[str, Any]:
        document = None
        if 0 < number <= _NUMBER_MAX:  # larger ones cannot exist (and overflow the column)
            document = await connection.scalar(
                select(config_versions.c.document).where(
                    and_(config_versions.c.tenant == tenant, config_versions.c.number == number)
                )
            )
        if document is None:
            label = "the global level" if tenant == GLOBAL else f"tenant {tenant!r}"
            msg = (
                f"No configuration version {number} for {label}; "
                "GET /v1/config/versions lists them."
            )
            raise NotFound(msg)
        return dict(document)

    @staticmethod
    async def _active_number(connection: AsyncConnection, tenant: str) -> int:
        number = await connection.scalar(
            select(config_activations.c.number)
            .where(config_activations.c.tenant == tenant)
            .order_by(config_activations.c.id.desc())
            .limit(1)
        )
        return int(number or 0)

    @staticmethod
    async def _check_prompt_version(
        connection: AsyncConnection, tenant: str, overrides: RuntimeOverrides
    ) -> None:
        rollout = overrides.rollout
        if rollout is None or rollout.prompt_version is None:
            return
        owner = await connection.scalar(
            select(prompt_versions.c.tenant).where(prompt_versions.c.id == rollout.prompt_version)
        )
        # A tenant may try its own prompt versions or global ones; the global level only
        # global ones (a tenant's prompt means nothing for the others).
        if owner is None or owner not in {tenant, GLOBAL}:
            msg = (
                f"rollout.prompt_version: no prompt version {rollout.prompt_version!r} of "
                f"{'the global level' if tenant == GLOBAL else f'tenant {tenant!r}'}; "
                "GET /v1/prompts/{name}/versions lists them."
            )
            raise InvalidRequest(msg)

    @staticmethod
    async def _record_activation(
        connection: AsyncConnection,
        tenant: str,
        number: int | None,
        actor: str,
        action: Literal["activate", "rollback"],
    ) -> None:
        await connection.execute(
            insert(config_activations).values(
                tenant=tenant,
                number=number,
                action=action,
                activated_by=actor[:_ACTOR_MAX],
                activated_at=datetime.now(UTC),
            )
        )
