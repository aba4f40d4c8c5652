"""Prompt versions in the SQL store, and the effective prompt of a request.

Three layers: the repo's prompt (``prompts/<name>/``, the global layer, versioned by content
hash and changed by a deploy), a tenant's own version, and a client's (an application within
the tenant). A layer's active version is named by its latest activation row. Requests read
an in-memory snapshot of every active version; the snapshot reloads when the newest
activation id in the database changes (checked at most every ``refresh_s``), so an
activation made through any API replica reaches all of them within seconds, without restart
(the mechanism, shared with the runtime configuration: ``api.stores.activation_snapshot``).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import and_, func, insert, select, update

from api.stores.activation_snapshot import ActivationSnapshot
from core.db import Database, as_utc, prompt_activations, prompt_versions
from core.errors import Conflict, NotFound
from core.prompts import (
    EffectivePrompt,
    PromptInvalid,
    PromptLayer,
    PromptTemplate,
    VariableSpec,
    global_layer,
    load_repo_prompt,
    repo_prompt_names,
    resolve,
)
from core.prompts.variables import parse_variables

__all__ = ["PromptRegistry", "PromptVersion", "repo_layers", "scope_label"]

_log = logging.getLogger("enclave.prompts")

ActivationAction = Literal["activate", "rollback", "deactivate"]


def scope_label(tenant: str, client: str) -> str:
    """``tenant:acme`` or ``client:acme/portal``."""
    return f"client:{tenant}/{client}" if client else f"tenant:{tenant}"


def repo_layers(directory: Path) -> dict[str, PromptLayer]:
    """The global layer of every prompt in the repo's ``prompts/`` folder (each subfolder
    with a ``prompt.yaml``), versioned by a hash of its content."""
    return {
        name: global_layer(load_repo_prompt(directory / name))
        for name in repo_prompt_names(directory)
    }


@dataclass(frozen=True, slots=True)
class PromptVersion:
    """One stored version of a tenant's or client's prompt."""

    id: str
    tenant: str
    client: str
    name: str
    number: int
    template: PromptTemplate
    note: str
    created_by: str
    created_at: datetime
    last_check: dict[str, Any] | None = None

    @property
    def layer(self) -> PromptLayer:
        """This version as a layer of the inheritance chain."""
        return PromptLayer(
            scope="client" if self.client else "tenant",
            label=scope_label(self.tenant, self.client),
            version_id=self.id,
            number=self.number,
            template=self.template,
        )

    def shown(self, *, active: bool | None = None) -> dict[str, Any]:
        """The version as the API shows it."""
        shown: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "tenant": self.tenant,
            "client": self.client or None,
            "number": self.number,
            **self.template.to_document(),
            "note": self.note,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "last_check": self.last_check,
        }
        if active is not None:
            shown["active"] = active
        return shown


@dataclass(frozen=True, slots=True)
class _Snapshot:
    activation_id: int
    active: Mapping[tuple[str, str, str], PromptVersion]  # (tenant, client, name) -> version


class PromptRegistry:
    """Stored prompt versions, their activation history, and request-time resolution."""

    def __init__(
        self,
        database: Database,
        repo_prompts: Mapping[str, PromptLayer],
        *,
        refresh_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = database
        self._repo = dict(repo_prompts)
        self._snapshot = ActivationSnapshot(
            self._load, refresh_s=refresh_s, log=_log, what="prompt versions", clock=clock
        )
        self._resolved: dict[tuple[int, str, str, str], EffectivePrompt] = {}

    @property
    def names(self) -> list[str]:
        """The prompts that exist (one per repo prompt)."""
        return sorted(self._repo)

    def global_layer(self, name: str) -> PromptLayer:
        """The repo's version of a prompt (the global layer)."""
        try:
            return self._repo[name]
        except KeyError:
            known = ", ".join(sorted(self._repo))
            raise NotFound(f"No prompt named {name!r}; prompts here: {known}.") from None

    # ------------------------------------------------------------------ request time
    async def effective(self, name: str, tenant: str, client: str | None = None) -> EffectivePrompt:
        """The prompt a request of ``tenant`` (from ``client``) runs under."""
        snapshot = await self._snapshot.current()
        key = (snapshot.activation_id, name, tenant, client or "")
        cached = self._resolved.get(key)
        if cached is None:
            layers = [self.global_layer(name)]
            scopes = [""] + ([client] if client else [])
            for scope in scopes:
                version = snapshot.active.get((tenant, scope, name))
                if version is not None:
                    layers.append(version.layer)
            cached = _resolve_or_fewer(layers)
            if len(self._resolved) > 4096:
                self._resolved.clear()
            self._resolved[key] = cached
        return cached

    async def candidate(self, version: PromptVersion) -> EffectivePrompt:
        """The prompt ``version``'s scope would run under if it were active."""
        snapshot = await self._snapshot.current()
        layers = [self.global_layer(version.name)]
        if version.client:
            tenant_version = snapshot.active.get((version.tenant, "", version.name))
            if tenant_version is not None:
                layers.append(tenant_version.layer)
        layers.append(version.layer)
        return resolve(layers)

    async def trial(self, name: str, tenant: str, version_id: str) -> EffectivePrompt:
        """The prompt with ``version_id`` in place of its scope's active version: what a
        canary cohort runs under while a rollout tries the version on some users."""
        key = (-1, name, tenant, version_id)
        cached = self._resolved.get(key)
        if cached is None:
            cached = await self.candidate(await self.get(name, tenant, version_id))
            self._resolved[key] = cached
        return cached

    def invalidate(self) -> None:
        """Reload on the next request (this replica just changed an activation)."""
        self._snapshot.invalidate()
        self._resolved.clear()

    async def _load(self, previous: _Snapshot | None) -> _Snapshot:
        async with self._db.engine.connect() as connection:
            newest = (
                await connection.execute(select(func.max(prompt_activations.c.id)))
            ).scalar_one_or_none() or 0
            if previous is not None and previous.activation_id == newest:
                return previous
            latest = (
                select(func.max(prompt_activations.c.id))
                .group_by(
                    prompt_activations.c.tenant,
                    prompt_activations.c.client,
                    prompt_activations.c.name,
                )
                .scalar_subquery()
            )
            rows = (
                await connection.execute(
                    select(prompt_versions)
                    .join(
                        prompt_activations,
                        prompt_activations.c.version_id == prompt_versions.c.id,
                    )
                    .where(prompt_activations.c.id.in_(latest))
                )
            ).all()
        active = {(row.tenant, row.client, row.name): _version(row) for row in rows}
        return _Snapshot(newest, active)

    # ------------------------------------------------------------------ admin
    async def create(
        self,
        name: str,
        tenant: str,
        client: str,
        document: Mapping[str, Any],
        *,
        note: str,
        actor: str,
    ) -> PromptVersion:
        """Store a new (inactive) version; an invalid template is refused before storing."""
        global_layer = self.global_layer(name)
        # The version must also make a valid prompt on top of the layers it inherits.
        snapshot = await self._snapshot.current()
        layers = [global_layer]
        if client:
            tenant_version = snapshot.active.get((tenant, "", name))
            if tenant_version is not None:
                layers.append(tenant_version.layer)
        inherited: dict[str, VariableSpec] = {}
        for layer in layers:
            inherited.update(layer.template.variables)
        template = PromptTemplate.from_document(document, inherited=inherited)
        layers.append(
            PromptLayer(
                scope="client" if client else "tenant",
                label=scope_label(tenant, client),
                version_id="pv_new",
                number=0,
                template=template,
            )
        )
        resolve(layers)
        now = datetime.now(UTC)
        async with self._db.engine.begin() as connection:
            number = (
                await connection.execute(
                    select(func.coalesce(func.max(prompt_versions.c.number), 0)).where(
                        _scope(prompt_versions, name, tenant, client)
                    )
                )
            ).scalar_one() + 1
            version = PromptVersion(
                id="pv_" + secrets.token_hex(10),
                tenant=tenant,
                client=client,
                name=name,
                number=number,
                template=template,
                note=note,
                created_by=actor,
                created_at=now,
            )
            stored = template.to_document()
            await connection.execute(
                insert(prompt_versions).values(
                    id=version.id,
                    tenant=tenant,
                    client=client,
                    name=name,
                    number=number,
                    parts=stored["parts"],
                    variables=stored["variables"],
                    note=note,
                    created_by=actor,
                    created_at=now,
                )
            )
        return version

    async def get(self, name: str, tenant: str, version_id: str) -> PromptVersion:
        """One version of the tenant (or one of its clients); another tenant's is not found."""
        async with self._db.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(prompt_versions).where(
                        prompt_versions.c.id == version_id,
                        prompt_versions.c.tenant == tenant,
                        prompt_versions.c.name == name,
                    )
                )
            ).one_or_none()
        if row is None:
            raise NotFound(
                f"No version {version_id!r} of prompt {name!r} in your tenant; "
                f"GET /v1/prompts/{name}/versions lists them."
            )
        return _version(row)

    async def versions(
        self, name: str, tenant: str, client: str | None = None
    ) -> list[tuple[PromptVersion, bool]]:
        """The tenant's versions (of one client, if given; "" = the tenant level), newest
        first, each with whether it is active now."""
        self.global_layer(name)
        condition = and_(prompt_versions.c.tenant == tenant, prompt_versions.c.name == name)
        if client is not None:
            condition = and_(condition, prompt_versions.c.client == client)
        async with self._db.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(prompt_versions)
                    .where(condition)
                    .order_by(prompt_versions.c.client, prompt_versions.c.number.desc())
                )
            ).all()
            # What is active now, read here rather than by reloading the request snapshot.
            latest = (
                select(func.max(prompt_activations.c.id))
                .where(prompt_activations.c.tenant == tenant, prompt_activations.c.name == name)
                .group_by(prompt_activations.c.client)
                .scalar_subquery()
            )
            active_ids = set(
                (
                    await connection.execute(
                        select(prompt_activations.c.version_id).where(
                            prompt_activations.c.id.in_(latest)
                        )
                    )
                ).scalars()
            )
        return [(_version(row), row.id in active_ids) for row in rows]

    async def active_version(self, name: str, tenant: str, client: str) -> str | None:
        """The id of the version active at exactly this scope (None: it inherits)."""
        async with self._db.engine.connect() as connection:
            return (
                await connection.execute(
                    select(prompt_activations.c.version_id)
                    .where(_scope(prompt_activations, name, tenant, client))
                    .order_by(prompt_activations.c.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()

    async def activate(
        self, version: PromptVersion, *, actor: str, action: ActivationAction = "activate"
    ) -> None:
        """Make ``version`` the active one of its scope (the caller ran its suite)."""
        await self._record_activation(
            version.name,
            version.tenant,
            version.client,
            version_id=version.id,
            actor=actor,
            action=action,
        )

    async def rollback(
        self, name: str, tenant: str, client: str, *, actor: str
    ) -> tuple[str | None, str | None]:
        """Go back to the version active before the current one was activated (or to
        inheriting, if there was none); returns (from, to) version ids. Rollbacks walk back
        through the activations: two rollbacks after activating A then B land on inheriting,
        not on B again."""
        async with self._db.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(prompt_activations.c.version_id, prompt_activations.c.action)
                    .where(_scope(prompt_activations, name, tenant, client))
                    .order_by(prompt_activations.c.id)
                )
            ).all()
        # Replay the scope's history: an activation stacks a version, a rollback unstacks one.
        stack: list[str | None] = []
        for row in rows:
            if row.action == "rollback":
                if stack:
                    stack.pop()
            else:
                stack.append(row.version_id)
        if not stack or stack[-1] is None:
            raise Conflict(
                f"Nothing to roll back: {scope_label(tenant, client)} has no active version of "
                f"{name!r}; it uses the level above."
            )
        current = stack.pop()
        previous = stack[-1] if stack else None
        await self._record_activation(
            name, tenant, client, version_id=previous, actor=actor, action="rollback"
        )
        return current, previous

    async def record_check(self, version_id: str, result: Mapping[str, Any]) -> None:
        """Keep the latest regression-suite result on the version."""
        async with self._db.engine.begin() as connection:
            await connection.execute(
                update(prompt_versions)
                .where(prompt_versions.c.id == version_id)
                .values(last_check=dict(result))
            )

    async def _record_activation(
        self,
        name: str,
        tenant: str,
        client: str,
        *,
        version_id: str | None,
        actor: str,
        action: ActivationAction,
    ) -> None:
        async with self._db.engine.begin() as connection:
            await connection.execute(
                insert(prompt_activations).values(
                    tenant=tenant,
                    client=client,
                    name=name,
                    version_id=version_id,
                    action=action,
                    activated_by=actor,
                    activated_at=datetime.now(UTC),
                )
            )
        self.invalidate()


def _scope(table: Any, name: str, tenant: str, client: str) -> Any:
    return and_(table.c.name == name, table.c.tenant == tenant, table.c.client == client)


def _resolve_or_fewer(layers: list[PromptLayer]) -> EffectivePrompt:
    """Resolve the chain; if a stored layer no longer fits the layers above it (a deploy
    changed the global prompt), drop the most specific layers rather than fail requests."""
    while True:
        try:
            return resolve(layers)
        except PromptInvalid:
            if len(layers) == 1:
                raise
            dropped = layers.pop()
            _log.error(
                "prompt layer does not fit the layers above it; serving without it",
                extra={"scope": dropped.label, "version": dropped.version_id},
            )


def _version(row: Any) -> PromptVersion:
    # Validated when it was saved; the merged chain is validated again when it is resolved.
    variables, _ = parse_variables(row.variables)
    template = PromptTemplate(dict(row.parts), variables)
    return PromptVersion(
        id=row.id,
        tenant=row.tenant,
        client=row.client,
        name=row.name,
        number=row.number,
        template=template,
        note=row.note,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        last_check=row.last_check,
    )
