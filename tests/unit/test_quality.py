"""Quality signals: the rephrase rule, the quality view's maths over a real SQLite store,
the feedback/signals/quality routes, and the quality metrics."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from litestar import Litestar, Request
from litestar.di import Provide
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import insert, select

from api.access import Gatekeeper, principal_of
from api.errors import exception_handlers
from api.routes.feedback import FeedbackController
from api.security import Principal
from api.services import Services
from api.stores.audit_trail import AuditTrail
from api.stores.quality import QualityStore, is_rephrase
from core.db import Database, conversations, messages, quality_events
from core.errors import InvalidRequest, ServiceUnavailable
from core.metrics import OTHER, EnclaveMetrics
from core.settings import Settings
from models.pii.base import ScanResult
from tests.fakes import KeywordGuard, TestKeys, build_services

TODAY = date(2025, 3, 10)


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


@dataclass
class Seeder:
    """Writes history rows and quality events straight into the tables."""

    database: Database

    async def conversation(self, tenant: str = "default", user: str = "u1") -> str:
        conversation_id = f"conv_{secrets.token_hex(12)}"
        async with self.database.transaction() as connection:
            await connection.execute(
                insert(conversations).values(
                    id=conversation_id,
                    tenant=tenant,
                    user_id=user,
                    title="t",
                    created_at=at(TODAY),
                    updated_at=at(TODAY),
                    deleted_at=None,
                )
            )
        return conversation_id

    async def answer(
        self, conversation_id: str, when: datetime, lineage: dict[str, Any] | None
    ) -> str:
        request_id = f"req_{secrets.token_hex(12)}"
        async with self.database.transaction() as connection:
            seq = len(list(await connection.execute(select(messages.c.id)))) + 1
            await connection.execute(
                insert(messages).values(
                    id=f"msg_{secrets.token_hex(12)}",
                    conversation_id=conversation_id,
                    seq=seq,
                    role="assistant",
                    content="an answer",
                    request_id=request_id,
                    created_at=when,
                    lineage=lineage,
                )
            )
        return request_id


# -- is_rephrase ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "seconds", "expected"),
    [
        ("How do I reset my VPN password?", "how can I reset the VPN password", 20, True),
        ("vpn password reset", "reset vpn password please", 59.9, True),
        ("How do I reset my VPN password?", "How do I reset my VPN password?", 5, False),
        ("How do I reset my VPN password?", "how do i  reset my vpn PASSWORD?", 5, False),
        ("How do I reset my VPN password?", "how can I reset the VPN password", 61, False),
        ("How do I reset my VPN password?", "how can I reset the VPN password", -1, False),
        ("How do I reset my VPN password?", "What is the holiday policy?", 10, False),
        ("printer on floor 3 jams", "printer on floor 3 is jamming", 30, True),
        ("", "anything", 5, False),
    ],
)
def test_is_rephrase(before: str, after: str, seconds: float, expected: bool) -> None:
    assert is_rephrase(before, after, seconds) is expected


def test_a_typo_fix_is_a_rephrase_by_character_similarity() -> None:
    # Word sets barely overlap (every word has a typo), the characters nearly match.
    assert is_rephrase("pasword resett helpp", "password reset help", 10)


# -- the quality view over SQLite -----------------------------------------------------------


async def test_summary_rates_per_day_and_prompt_version(database: Database) -> None:
    seed = Seeder(database)
    store = QualityStore(database)
    mine = await seed.conversation()
    day1, day3 = TODAY - timedelta(days=2), TODAY
    lineages: list[dict[str, Any]] = [
        {"prompt_version": "p1", "decision": "answer", "fallback": "StallTimeout"},
        {"prompt_version": "p1", "decision": "refuse", "fallback": None},
        {"prompt_version": "p1", "decision": "answer", "retrieval": "degraded"},
        {"prompt_version": "p1", "decision": "answer", "retrieval": "ok"},
    ]
    p1 = [await seed.answer(mine, at(day1, 9 + i), lineage) for i, lineage in enumerate(lineages)]
    p2 = [
        await seed.answer(mine, at(day3, 1), {"prompt_version": "p2", "decision": "block"}),
        await seed.answer(mine, at(day3, 23), {"prompt_version": "p2", "decision": "answer"}),
    ]
    await seed.answer(mine, at(day3), None)  # an answer from before lineages had versions
    await seed.answer(mine, at(TODAY - timedelta(days=3)), {"prompt_version": "p1"})  # too old
    foreign = await seed.conversation(tenant="globex")
    await seed.answer(foreign, at(day3), {"prompt_version": "p2", "decision": "refuse"})

    def on(day: date) -> QualityStore:
        return QualityStore(database, clock=lambda: at(day))

    for user, request_id, kind in [
        ("u1", p1[0], "thumbs_up"),
        ("u2", p1[0], "thumbs_up"),
        ("u3", p1[1], "thumbs_up"),
        ("u1", p1[1], "thumbs_down"),
    ]:
        await on(day1).record(
            tenant="default", user_id=user, request_id=request_id, kind=kind, prompt_version="p1"
        )
    await on(day3).record(
        tenant="default", user_id="u1", request_id=p2[1], kind="copy", prompt_version="p2"
    )

    summary = await store.summary("default", days=3, today=TODAY)
    shown = summary.as_json()

    assert [(r["date"], r["prompt_version"]) for r in shown["days"]] == [
        (str(day), version)
        for day in (day1, day1 + timedelta(days=1), day3)
        for version in ("p1", "p2", None)
    ]
    cell = {(r["date"], r["prompt_version"]): r for r in shown["days"]}
    first = cell[(str(day1), "p1")]
    assert first["answers"] == 4
    assert first["satisfaction_rate"] == 0.75
    assert (first["fallback_rate"], first["refusal_rate"]) == (0.25, 0.25)
    assert first["degraded_retrieval_rate"] == 0.25
    assert first["signals"] == {
        "thumbs_up": 3,
        "thumbs_down": 1,
        "regenerate": 0,
        "copy": 0,
        "abandoned": 0,
        "rephrase": 0,
    }
    empty = cell[(str(day1 + timedelta(days=1)), "p1")]
    assert empty["answers"] == 0
    assert empty["satisfaction_rate"] is None
    assert empty["fallback_rate"] is None
    last = cell[(str(day3), "p2")]
    assert (last["answers"], last["refusal_rate"], last["satisfaction_rate"]) == (2, 0.5, None)
    assert last["signals"]["copy"] == 1
    assert cell[(str(day3), None)]["answers"] == 1

    totals = {row["prompt_version"]: row for row in shown["by_prompt_version"]}
    assert set(totals) == {"p1", "p2", None}
    assert totals["p1"]["answers"] == 4  # the answer before the window is not counted
    assert totals["p2"]["refusal_rate"] == 0.5  # globex's refusal is not counted
    assert shown["tenant"] == "default"
    assert (shown["from"], shown["to"]) == (str(day1), str(day3))


async def test_an_empty_window_still_has_every_day(database: Database) -> None:
    summary = await QualityStore(database).summary("default", days=5, today=TODAY)
    assert [row.day for row in summary.days] == [
        TODAY - timedelta(days=offset) for offset in range(4, -1, -1)
    ]
    assert all(row.prompt_version is None and row.answers == 0 for row in summary.days)
    assert summary.by_prompt_version == []


async def test_summary_refuses_windows_out_of_range(database: Database) -> None:
    store = QualityStore(database)
    for days in (0, 91):
        with pytest.raises(InvalidRequest, match="days must be between 1 and 90"):
            await store.summary("default", days=days)


async def test_record_refuses_unknown_kinds(database: Database) -> None:
    with pytest.raises(InvalidRequest, match="kind must be one of"):
        await QualityStore(database).record(
            tenant="default", user_id="u1", request_id="req_12345678", kind="love"
        )


# -- the routes -----------------------------------------------------------------------------


class DownGuard(KeywordGuard):
    """A guard whose PII scanner is away."""

    async def scan(self, texts: list[str]) -> list[ScanResult]:
        raise ServiceUnavailable("pii scanner restarting", retry_after=1)


@dataclass
class Stack:
    client: TestClient[Litestar]
    keys: TestKeys
    services: Services
    seed: Seeder

    def post(self, path: str, body: dict[str, Any], who: str = "staff") -> Any:
        return self.client.post(path, json=body, headers=self.keys.header(who))


def quality_app(services: Services) -> Litestar:
    """The quality routes as ``api/app.py`` serves them: the gatekeeper, the problem
    details, and the ``principal``/``services``/``quality`` dependencies."""

    def _principal(request: Request[Any, Any, Any]) -> Principal:
        return principal_of(request.scope)

    security = services.security
    trail = AuditTrail(services.database, services.audit)
    return Litestar(
        route_handlers=[FeedbackController],
        guards=[Gatekeeper(security.authenticator, security.rate_limiter, trail, services.metrics)],
        dependencies={
            "principal": Provide(_principal, sync_to_thread=False),
            "services": Provide(lambda: services, use_cache=True, sync_to_thread=False),
            "quality": Provide(
                lambda: QualityStore(services.database), use_cache=True, sync_to_thread=False
            ),
        },
        exception_handlers=exception_handlers,
    )


def make_stack(settings: Settings, keys: TestKeys, database: Database, **parts: Any) -> Services:
    return build_services(
        settings, keys, database, metrics=EnclaveMetrics(CollectorRegistry()), **parts
    )


@pytest.fixture
def stack(settings: Settings, keys: TestKeys, database: Database) -> Iterator[Stack]:
    services = make_stack(settings, keys, database)
    with TestClient(app=quality_app(services)) as client:
        yield Stack(client, keys, services, Seeder(database))


async def staff_answer(stack: Stack, lineage: dict[str, Any] | None = None) -> str:
    authenticator = stack.services.security.authenticator
    staff = await authenticator.authenticate(stack.keys.header("staff")["Authorization"])
    conversation = await stack.seed.conversation(tenant=staff.tenant, user=staff.subject)
    return await stack.seed.answer(
        conversation, datetime.now(UTC), lineage or {"prompt_version": "p7", "model": "m"}
    )


async def stored_events(database: Database) -> list[dict[str, Any]]:
    async with database.reading() as connection:
        rows = await connection.execute(select(quality_events).order_by(quality_events.c.id))
        return [dict(row._mapping) for row in rows]


async def test_a_rating_is_stored_scrubbed_and_replaced_by_the_next(
    stack: Stack, database: Database
) -> None:
    request_id = await staff_answer(stack)
    comment = "Ana Silva says wrong, write to ana.silva@northwind.example"
    first = stack.post(
        "/v1/feedback", {"request_id": request_id, "rating": "down", "comment": comment}
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["comment"] == "<PERSON_1> says wrong, write to <EMAIL_ADDRESS_1>"
    assert (body["request_id"], body["rating"]) == (request_id, "down")
    assert body["id"].startswith("qe_")
    (row,) = await stored_events(database)
    assert row["comment"] == body["comment"]
    assert (row["kind"], row["prompt_version"], row["model"]) == ("thumbs_down", "p7", "m")

    again = stack.post("/v1/feedback", {"request_id": f"chatcmpl-{request_id}", "rating": "up"})
    assert again.status_code == 201, again.text
    (row,) = await stored_events(database)
    assert (row["kind"], row["comment"]) == ("thumbs_up", None)
    value = stack.services.metrics.registry.get_sample_value
    labels = {"prompt_version": "p7"}
    assert value("enclave_quality_events_total", {**labels, "kind": "thumbs_down"}) == 1.0
    assert value("enclave_quality_events_total", {**labels, "kind": "thumbs_up"}) == 1.0


async def test_someone_elses_answer_is_not_found(stack: Stack, database: Database) -> None:
    request_id = await staff_answer(stack)
    for intruder in ("tenant_admin", "foreign_staff"):
        response = stack.post("/v1/feedback", {"request_id": request_id, "rating": "up"}, intruder)
        assert response.status_code == 404, response.text
        assert "no answer" in response.json()["detail"]
        signal = stack.post("/v1/signals", {"request_id": request_id, "kind": "copy"}, intruder)
        assert signal.status_code == 404
    unknown = stack.post("/v1/feedback", {"request_id": "req_000000000000", "rating": "up"})
    assert unknown.status_code == 404
    assert await stored_events(database) == []


async def test_bad_feedback_is_refused_with_what_to_fix(stack: Stack, database: Database) -> None:
    request_id = await staff_answer(stack)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"request_id": request_id, "rating": "meh"}, "rating"),
        ({"request_id": request_id, "rating": "up", "comment": "x" * 2001}, "2000 characters"),
        ({"request_id": "a b", "rating": "up"}, "request_id"),
        ({"request_id": request_id, "rating": "up", "stars": 5}, "stars"),
    ]
    for body, hint in cases:
        response = stack.post("/v1/feedback", body)
        assert response.status_code == 400, (body, response.text)
        assert hint in response.text
    assert await stored_events(database) == []


async def test_a_comment_is_never_stored_unscrubbed(
    settings: Settings, keys: TestKeys, database: Database
) -> None:
    services = make_stack(settings, keys, database, guard=DownGuard())
    with TestClient(app=quality_app(services)) as client:
        stack = Stack(client, keys, services, Seeder(database))
        request_id = await staff_answer(stack)
        body = {"request_id": request_id, "rating": "down", "comment": "Ana Silva"}
        assert stack.post("/v1/feedback", body).status_code == 503
        # Without a comment there is nothing to scrub: the rating goes through.
        body = {"request_id": request_id, "rating": "down"}
        assert stack.post("/v1/feedback", body).status_code == 201
    assert [row["comment"] for row in await stored_events(database)] == [None]


async def test_signals_from_the_client(stack: Stack, database: Database) -> None:
    request_id = await staff_answer(stack)
    for kind in ("copy", "regenerate", "copy"):
        response = stack.post("/v1/signals", {"request_id": request_id, "kind": kind})
        assert response.status_code == 202, response.text
        assert response.json()["id"].startswith("qe_")
    server_side = stack.post("/v1/signals", {"request_id": request_id, "kind": "abandoned"})
    assert server_side.status_code == 400
    kinds = sorted(row["kind"] for row in await stored_events(database))
    assert kinds == ["copy", "copy", "regenerate"]  # signals add up, unlike ratings


async def test_the_quality_view_is_for_tenant_admins(stack: Stack) -> None:
    request_id = await staff_answer(stack, {"prompt_version": "p7", "fallback": "StallTimeout"})
    stack.post("/v1/feedback", {"request_id": request_id, "rating": "up"})
    admin = stack.keys.header("tenant_admin")
    view = stack.client.get("/v1/quality", params={"days": 2}, headers=admin)
    assert view.status_code == 200, view.text
    body = view.json()
    assert body["tenant"] == "default"
    today = datetime.now(UTC).date().isoformat()
    assert [(r["date"], r["prompt_version"]) for r in body["days"]][-1] == (today, "p7")
    last = body["days"][-1]
    assert (last["answers"], last["fallback_rate"], last["satisfaction_rate"]) == (1, 1.0, 1.0)
    assert len(stack.client.get("/v1/quality", headers=admin).json()["days"]) == 14
    for days in ("0", "91", "many"):
        response = stack.client.get("/v1/quality", params={"days": days}, headers=admin)
        assert response.status_code == 400, days
    assert stack.client.get("/v1/quality", headers=stack.keys.header("staff")).status_code == 403
    foreign = stack.client.get("/v1/quality", headers=stack.keys.header("foreign_admin")).json()
    assert all(row["answers"] == 0 for row in foreign["days"])


# -- metrics --------------------------------------------------------------------------------


def test_quality_metrics_start_at_zero_per_prompt_version_and_stay_bounded() -> None:
    registry = CollectorRegistry()
    metrics = EnclaveMetrics(registry)
    value = registry.get_sample_value
    assert value("enclave_answers_total", {"prompt_version": "none", "outcome": "refused"}) == 0

    metrics.answer("pv_3", "answered")
    metrics.answer("pv_3", "fallback")
    metrics.quality_event("thumbs_up", "pv_3")
    metrics.quality_event("copy", None)

    assert value("enclave_answers_total", {"prompt_version": "pv_3", "outcome": "answered"}) == 1
    assert value("enclave_answers_total", {"prompt_version": "pv_3", "outcome": "refused"}) == 0
    down = {"prompt_version": "pv_3", "kind": "thumbs_down"}
    assert value("enclave_quality_events_total", down) == 0  # up/(up+down) is defined
    assert value("enclave_quality_events_total", {"prompt_version": "none", "kind": "copy"}) == 1

    metrics.quality_event("my SSN is 219-09-9999", "pv_3")
    metrics.answer("pv 3; DROP TABLE", "answered")
    assert value("enclave_quality_events_total", {"prompt_version": "pv_3", "kind": OTHER}) == 1
    assert value("enclave_answers_total", {"prompt_version": OTHER, "outcome": "answered"}) == 1
