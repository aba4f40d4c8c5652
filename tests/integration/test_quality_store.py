"""The quality store on real SQLite and PostgreSQL: ratings replace each other, answers are
found only for their owner, and the quality view counts the same on both databases."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from api.stores.quality import QualityStore
from core.db import Database, conversations, messages, quality_events, upgrade
from tests.integration.databases import KINDS, fresh_database_url

pytestmark = pytest.mark.integration

TODAY = date(2025, 6, 30)
TENANT = "northwind"


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


@pytest.fixture(params=KINDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database_url(request.param, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        db = Database.from_url(url)
        try:
            yield db
        finally:
            await db.dispose()


async def conversation(db: Database, user: str, tenant: str = TENANT) -> str:
    conversation_id = f"conv_{secrets.token_hex(12)}"
    async with db.transaction() as connection:
        await connection.execute(
            insert(conversations).values(
                id=conversation_id,
                tenant=tenant,
                user_id=user,
                title="VPN",
                created_at=at(TODAY),
                updated_at=at(TODAY),
                deleted_at=None,
            )
        )
    return conversation_id


async def answer(
    db: Database, conversation_id: str, when: datetime, lineage: dict[str, Any] | None
) -> str:
    """A user turn and the assistant's answer to it; returns the answer's request id."""
    request_id = f"req_{secrets.token_hex(12)}"
    async with db.transaction() as connection:
        count = len(
            list(
                await connection.execute(
                    select(messages.c.id).where(messages.c.conversation_id == conversation_id)
                )
            )
        )
        for offset, role in enumerate(("user", "assistant")):
            await connection.execute(
                insert(messages).values(
                    id=f"msg_{secrets.token_hex(12)}",
                    conversation_id=conversation_id,
                    seq=count + offset + 1,
                    role=role,
                    content="question" if role == "user" else "answer",
                    request_id=request_id,
                    created_at=when,
                    lineage=lineage if role == "assistant" else None,
                )
            )
    return request_id


async def events(db: Database) -> list[dict[str, Any]]:
    async with db.reading() as connection:
        rows = await connection.execute(select(quality_events).order_by(quality_events.c.kind))
        return [dict(row._mapping) for row in rows]


async def test_answer_of_finds_only_the_callers_own_answer(database: Database) -> None:
    store = QualityStore(database)
    mine = await conversation(database, "u_ana")
    lineage = {"prompt_version": "pv_2", "config_version": "cfg_5", "model": "smollm2"}
    request_id = await answer(database, mine, at(TODAY), lineage)

    found = await store.answer_of(TENANT, "u_ana", request_id)
    assert found is not None
    assert (found.conversation_id, found.prompt_version) == (mine, "pv_2")
    assert (found.config_version, found.model) == ("cfg_5", "smollm2")

    assert await store.answer_of(TENANT, "u_joe", request_id) is None  # same tenant
    assert await store.answer_of("globex", "u_ana", request_id) is None  # same user id
    assert await store.answer_of(TENANT, "u_ana", "req_unknown0") is None

    bare = await answer(database, mine, at(TODAY), None)
    found = await store.answer_of(TENANT, "u_ana", bare)
    assert found is not None
    assert (found.prompt_version, found.model) == (None, None)

    async with database.transaction() as connection:
        await connection.execute(
            update(conversations).where(conversations.c.id == mine).values(deleted_at=at(TODAY))
        )
    assert await store.answer_of(TENANT, "u_ana", request_id) is None


async def test_a_new_rating_replaces_the_previous_one(database: Database) -> None:
    store = QualityStore(database)
    mine = await conversation(database, "u_ana")
    request_id = await answer(database, mine, at(TODAY), {"prompt_version": "pv_1"})
    other = await answer(database, mine, at(TODAY), {"prompt_version": "pv_1"})
    common = {"tenant": TENANT, "request_id": request_id, "prompt_version": "pv_1"}

    await store.record(user_id="u_ana", kind="thumbs_down", comment="<PERSON_1> wrong", **common)
    await store.record(user_id="u_ana", kind="copy", **common)
    await store.record(user_id="u_joe", kind="thumbs_down", **common)  # another user's rating
    await store.record(user_id="u_ana", kind="thumbs_up", tenant=TENANT, request_id=other)
    latest = await store.record(user_id="u_ana", kind="thumbs_up", **common)

    stored = await events(database)
    ana_on_answer = [
        (e["kind"], e["comment"])
        for e in stored
        if e["user_id"] == "u_ana" and e["request_id"] == request_id
    ]
    assert sorted(ana_on_answer) == [("copy", None), ("thumbs_up", None)]
    assert latest in {e["id"] for e in stored}
    assert len(stored) == 4  # joe's rating and the rating of the other answer stay

    summary = await store.summary(TENANT, days=1)
    total = next(row for row in summary.by_prompt_version if row.prompt_version == "pv_1")
    assert total.signals["thumbs_up"] == 1
    assert total.signals["thumbs_down"] == 1
    assert total.satisfaction_rate == 0.5


async def test_summary_per_day_and_prompt_version(database: Database) -> None:
    ana = await conversation(database, "u_ana")
    joe = await conversation(database, "u_joe")
    foreign = await conversation(database, "u_ana", tenant="globex")
    first, empty, last = TODAY - timedelta(days=2), TODAY - timedelta(days=1), TODAY

    # Day one, prompt v1: five answers — one fallback, one refused, one blocked, two
    # with degraded retrieval.
    v1 = [
        await answer(database, ana, at(first, 0, 1), {"prompt_version": "v1", "fallback": None}),
        await answer(database, ana, at(first, 8), {"prompt_version": "v1", "fallback": "Stall"}),
        await answer(database, joe, at(first, 9), {"prompt_version": "v1", "decision": "refuse"}),
        await answer(database, joe, at(first, 10), {"prompt_version": "v1", "decision": "block"}),
        await answer(database, ana, at(first, 23, 59), {"prompt_version": "v1"}),
    ]
    async with database.transaction() as connection:
        # Lineages record retrieval as a status; mark two of day one's answers degraded.
        for request_id in v1[3:]:
            await connection.execute(
                update(messages)
                .where(messages.c.request_id == request_id, messages.c.role == "assistant")
                .values(
                    lineage={
                        "prompt_version": "v1",
                        "retrieval": "degraded",
                        "decision": "block" if request_id == v1[3] else "answer",
                    }
                )
            )
    # The last day, prompt v2: two answers; v1 still serves one user (a canary).
    v2 = [
        await answer(database, ana, at(last, 7), {"prompt_version": "v2", "retrieval": "ok"}),
        await answer(database, joe, at(last, 8), {"prompt_version": "v2", "decision": "escalate"}),
    ]
    await answer(database, joe, at(last, 9), {"prompt_version": "v1"})
    # Outside the window or the tenant: not counted.
    await answer(database, ana, at(first - timedelta(days=1), 23, 59), {"prompt_version": "v1"})
    await answer(database, foreign, at(last), {"prompt_version": "v2", "decision": "refuse"})

    def on(day: date, hour: int = 12) -> QualityStore:
        return QualityStore(database, clock=lambda: at(day, hour))

    for user, request_id, kind in [
        ("u_ana", v1[0], "thumbs_up"),
        ("u_ana", v1[1], "thumbs_down"),
        ("u_joe", v1[2], "thumbs_down"),
        ("u_ana", v1[4], "rephrase"),
    ]:
        await on(first).record(
            tenant=TENANT, user_id=user, request_id=request_id, kind=kind, prompt_version="v1"
        )
    for user, request_id, kind in [
        ("u_ana", v2[0], "thumbs_up"),
        ("u_joe", v2[1], "thumbs_up"),
        ("u_joe", v2[1], "regenerate"),
        ("u_ana", v2[0], "abandoned"),
    ]:
        await on(last).record(
            tenant=TENANT, user_id=user, request_id=request_id, kind=kind, prompt_version="v2"
        )
    await on(last).record(
        tenant="globex", user_id="u_ana", request_id="req_foreign01", kind="thumbs_down"
    )

    summary = await on(last, 23).summary(TENANT, days=3)
    assert (summary.first_day, summary.last_day) == (first, last)
    assert [(row.day, row.prompt_version) for row in summary.days] == [
        (day, version) for day in (first, empty, last) for version in ("v1", "v2")
    ]
    cell = {(row.day, row.prompt_version): row for row in summary.days}

    day_one = cell[(first, "v1")]
    assert day_one.answers == 5
    assert day_one.fallback_rate == 0.2
    assert day_one.refusal_rate == 0.4  # refuse and block
    assert day_one.degraded_retrieval_rate == 0.4
    assert day_one.satisfaction_rate == round(1 / 3, 4)
    assert day_one.signals["rephrase"] == 1

    for version in ("v1", "v2"):
        quiet = cell[(empty, version)]
        assert quiet.answers == 0
        assert quiet.satisfaction_rate is None
        assert quiet.fallback_rate is None
        assert set(quiet.signals.values()) == {0}
    assert cell[(first, "v2")].answers == 0

    day_three = cell[(last, "v2")]
    assert day_three.answers == 2
    assert day_three.refusal_rate == 0.5  # escalate; globex's refusal is theirs
    assert day_three.degraded_retrieval_rate == 0.0
    assert day_three.satisfaction_rate == 1.0
    assert (day_three.signals["regenerate"], day_three.signals["abandoned"]) == (1, 1)
    assert cell[(last, "v1")].answers == 1

    totals = {row.prompt_version: row for row in summary.by_prompt_version}
    assert list(totals) == ["v1", "v2"]
    assert totals["v1"].answers == 6  # the answer before the window is not counted
    assert totals["v1"].refusal_rate == round(2 / 6, 4)
    assert totals["v2"].satisfaction_rate == 1.0

    shown = summary.as_json()
    assert shown["days"][0]["date"] == first.isoformat()
    assert shown["by_prompt_version"][0]["prompt_version"] == "v1"
    assert "date" not in shown["by_prompt_version"][0]
