"""Prompt versions on real SQLite and PostgreSQL: stored, activated per scope, resolved
global → tenant → client, rolled back, and seen by a second API replica (a second registry
on the same database) within its refresh interval, without restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.stores.prompt_registry import PromptRegistry, repo_layers
from core.db import Database, upgrade
from core.errors import Conflict, NotFound
from core.prompts import PromptInvalid
from tests.integration.databases import KINDS, fresh_database_url

pytestmark = pytest.mark.integration

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
LAYERS = repo_layers(PROMPTS)
VALUES = {"canary": "NWC-0000", "documents": [], "today": "2026-11-28", "tenant": "acme"}


@pytest.fixture(params=KINDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database_url(request.param, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        db = Database.from_url(url)
        try:
            yield db
        finally:
            await db.dispose()


async def test_versions_activate_per_scope_and_resolve_in_order(database: Database) -> None:
    registry = PromptRegistry(database, LAYERS, refresh_s=60.0)
    before = await registry.effective("chat", "acme", "portal")
    assert before.version == LAYERS["chat"].version_id
    tenant = await registry.create(
        "chat",
        "acme",
        "",
        {"variables": {"organisation": {"type": "str", "default": "Acme Corp"}}},
        note="our name",
        actor="u_admin",
    )
    client = await registry.create(
        "chat",
        "acme",
        "portal",
        {"parts": {"welcome": "Hi from {{ organisation }}."}},
        note="portal greeting",
        actor="u_admin",
    )
    assert (tenant.number, client.number) == (1, 1)
    # Stored, not active: requests still run the global prompt.
    assert (await registry.effective("chat", "acme", "portal")).version == before.version

    await registry.activate(tenant, actor="u_admin")
    await registry.activate(client, actor="u_admin")
    portal = await registry.effective("chat", "acme", "portal")
    assert portal.version == client.id
    assert [link["scope"] for link in portal.chain] == ["global", "tenant", "client"]
    # The client's part uses the tenant's variable default.
    assert portal.render("welcome", VALUES) == "Hi from Acme Corp."
    assert "Acme Corp staff assistant" in portal.render("system", VALUES)
    plain = await registry.effective("chat", "acme")
    assert plain.version == tenant.id
    assert not plain.render("welcome", VALUES).startswith("Hi from")
    assert (await registry.effective("chat", "globex", "portal")).version == before.version

    listed = await registry.versions("chat", "acme")
    assert {(v.id, active) for v, active in listed} == {(tenant.id, True), (client.id, True)}


async def test_rollback_returns_to_the_previous_version_then_to_inheriting(
    database: Database,
) -> None:
    registry = PromptRegistry(database, LAYERS, refresh_s=60.0)
    with pytest.raises(Conflict):
        await registry.rollback("chat", "acme", "", actor="u_admin")
    first, second = [
        await registry.create(
            "chat", "acme", "", {"parts": {"refusal": text}}, note=text, actor="u_admin"
        )
        for text in ("Not here, sorry.", "Outside what I can help with.")
    ]
    await registry.activate(first, actor="u_admin")
    await registry.activate(second, actor="u_admin")
    assert (await registry.effective("chat", "acme")).version == second.id
    assert await registry.rollback("chat", "acme", "", actor="u_admin") == (second.id, first.id)
    assert (await registry.effective("chat", "acme")).version == first.id
    assert await registry.rollback("chat", "acme", "", actor="u_admin") == (first.id, None)
    assert (await registry.effective("chat", "acme")).version == LAYERS["chat"].version_id
    assert await registry.active_version("chat", "acme", "") is None


async def test_a_second_replica_sees_an_activation_within_its_refresh_interval(
    database: Database,
) -> None:
    writer = PromptRegistry(database, LAYERS, refresh_s=60.0)
    reader = PromptRegistry(database, LAYERS, refresh_s=0.2)
    assert (await reader.effective("chat", "acme")).version == LAYERS["chat"].version_id
    version = await writer.create(
        "chat", "acme", "", {"parts": {"blocked": "No."}}, note="short", actor="u_admin"
    )
    await writer.activate(version, actor="u_admin")
    await asyncio.sleep(0.3)
    assert (await reader.effective("chat", "acme")).version == version.id


async def test_invalid_or_foreign_versions_store_nothing_and_are_not_found(
    database: Database,
) -> None:
    registry = PromptRegistry(database, LAYERS, refresh_s=60.0)
    with pytest.raises(PromptInvalid, match="department"):
        await registry.create(
            "chat", "acme", "", {"parts": {"welcome": "{{ department }}"}}, note="", actor="u"
        )
    assert await registry.versions("chat", "acme") == []
    version = await registry.create(
        "chat", "acme", "", {"parts": {"welcome": "Hello."}}, note="", actor="u"
    )
    with pytest.raises(NotFound):
        await registry.get("chat", "globex", version.id)
    with pytest.raises(NotFound):
        await registry.effective("no-such-prompt", "acme")
