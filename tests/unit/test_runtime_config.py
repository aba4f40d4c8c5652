"""Runtime configuration: validation messages, the merge order, canary cohorts, and the
``/v1/config`` routes over a real (SQLite) store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar, Request
from litestar.di import Provide
from litestar.testing import TestClient
from sqlalchemy import select

from api.access import Gatekeeper, principal_of
from api.errors import exception_handlers
from api.routes.config import RuntimeConfigController
from api.security import Principal
from api.stores.audit_trail import AuditTrail
from api.stores.runtime_config import RuntimeConfigStore
from core.db import Database, audit_log
from core.errors import InvalidRequest
from core.runtime_overrides import (
    Decoding,
    EffectiveRuntime,
    RuntimeOverrides,
    cohort,
    effective_runtime,
    validate_overrides,
)
from core.settings import Settings
from tests.fakes import KeywordGuard, TestKeys, build_services


def _settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


NO_FALLBACK = {"llm": {"fallback": None}}


def _problems(document: Any, settings: Settings | None = None) -> list[str]:
    with pytest.raises(InvalidRequest) as caught:
        validate_overrides(document, settings or _settings())
    problems = caught.value.extra["problems"]
    assert isinstance(problems, list)
    # The message names every problem, so an admin fixes them all in one go.
    for problem in problems:
        assert problem in caught.value.detail
    return problems


# --- validation ---------------------------------------------------------------------------


def test_a_valid_document_is_returned_typed() -> None:
    overrides = validate_overrides(
        {
            "features": {"retrieval": False},
            "models": {"engine": "fallback"},
            "retrieval": {"top_k": 6, "min_score": 0.5},
            "generation": {"default_max_tokens": 128, "max_completion_tokens": 256},
            "rollout": {"percent": 10, "engine": "fallback"},
        },
        _settings(),
    )
    assert overrides.retrieval is not None
    assert overrides.retrieval.top_k == 6
    assert overrides.rollout is not None
    assert overrides.rollout.percent == 10


def test_an_empty_document_means_no_overrides() -> None:
    assert validate_overrides({}, _settings()) == RuntimeOverrides()


def test_every_problem_is_listed_with_its_path() -> None:
    problems = _problems(
        {
            "features": {"retrieval": "yes", "colour": True},
            "retrieval": {"top_k": 50, "min_score": -0.1},
            "models": {"engine": "tertiary"},
            "bogus": {},
        }
    )
    assert problems == [
        "features.retrieval: must be true or false (got 'yes')",
        "features.colour: unknown setting; known here: retrieval, fallback",
        "models.engine: must be one of 'primary' or 'fallback' (got 'tertiary')",
        "retrieval.top_k: must be at most 20 (got 50)",
        "retrieval.min_score: must be at least 0.0 (got -0.1)",
        "bogus: unknown setting; known here: features, models, retrieval, generation, limits, "
        "pii, decoding, rollout",
    ]


def test_numbers_are_not_guessed_from_strings() -> None:
    assert _problems({"retrieval": {"top_k": "5"}}) == [
        "retrieval.top_k: must be a whole number (got '5')"
    ]
    assert _problems({"generation": {"default_max_tokens": 1.5}}) == [
        "generation.default_max_tokens: must be a whole number (got 1.5)"
    ]


def test_a_long_wrong_value_is_quoted_short() -> None:
    [problem] = _problems({"models": {"engine": "x" * 10_000}})
    assert problem.startswith("models.engine: must be one of 'primary' or 'fallback' (got 'xxx")
    assert len(problem) < 150


def test_a_section_that_is_not_an_object_says_so() -> None:
    assert _problems({"features": [True]}) == ["features: must be an object (got [True])"]


def test_the_fallback_engine_needs_one_configured() -> None:
    problems = _problems(
        {
            "models": {"engine": "fallback"},
            "features": {"fallback": True},
            "rollout": {"percent": 5, "engine": "fallback"},
        },
        _settings(**NO_FALLBACK),
    )
    assert problems == [
        "models.engine: 'fallback' needs llm.fallback configured; this deployment has none",
        "features.fallback: true needs llm.fallback configured; this deployment has none",
        "rollout.engine: 'fallback' needs llm.fallback configured; this deployment has none",
    ]
    # Turning the fallback off is always possible.
    validate_overrides({"features": {"fallback": False}}, _settings(**NO_FALLBACK))


def test_retrieval_cannot_be_turned_on_without_a_retriever() -> None:
    problems = _problems({"features": {"retrieval": True}}, _settings(retrieval={"enabled": False}))
    assert problems == [
        "features.retrieval: true needs retrieval.enabled in the settings; this deployment "
        "runs no retriever"
    ]


def test_the_answer_budget_must_not_exceed_the_completion_limit() -> None:
    assert _problems({"generation": {"default_max_tokens": 300, "max_completion_tokens": 200}}) == [
        "generation.default_max_tokens must not exceed max_completion_tokens (300 > 200)"
    ]
    # Against the settings' limit when the document sets none (api.max_completion_tokens).
    settings = _settings(api={"max_completion_tokens": 100})
    assert _problems({"generation": {"default_max_tokens": 101}}, settings) == [
        "generation.default_max_tokens must not exceed max_completion_tokens (101 > 100)"
    ]


def test_limits_must_fit_the_context_window() -> None:
    settings = _settings(
        llm={
            "primary": {"max_model_len": 512},
            "fallback": {"max_model_len": 512, "engine": "transformers"},
        }
    )
    problems = _problems(
        {
            "generation": {"max_completion_tokens": 600},
            "retrieval": {"max_context_tokens": 1024},
        },
        settings,
    )
    assert problems == [
        "generation.max_completion_tokens: 600 does not fit the model's context window of "
        "512 tokens; use fewer",
        "retrieval.max_context_tokens: 1024 does not fit the model's context window of "
        "512 tokens; use fewer",
    ]


def test_a_canary_needs_something_to_try_and_a_real_prompt_id() -> None:
    assert _problems({"rollout": {"percent": 20}}) == [
        "rollout: a canary needs a prompt_version or an engine to try (or percent 0)"
    ]
    assert _problems({"rollout": {"percent": 20, "prompt_version": "chat-v2"}}) == [
        "rollout.prompt_version: must be a prompt version id like pv_0123abcd (got 'chat-v2')"
    ]
    assert _problems({"rollout": {"percent": 101, "engine": "primary"}}) == [
        "rollout.percent: must be at most 100 (got 101)"
    ]


def test_a_document_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        validate_overrides([("retrieval", {})], _settings())  # type: ignore[arg-type]


# --- merge order --------------------------------------------------------------------------


def _merge(
    settings: Settings,
    global_doc: dict[str, Any] | None = None,
    tenant_doc: dict[str, Any] | None = None,
    numbers: tuple[int, int] = (0, 0),
) -> EffectiveRuntime:
    top = None if global_doc is None else validate_overrides(global_doc, settings)
    own = None if tenant_doc is None else validate_overrides(tenant_doc, settings)
    return effective_runtime(settings, top, numbers[0], own, numbers[1])


def test_without_overrides_the_settings_apply() -> None:
    settings = _settings(
        retrieval={"top_k": 5, "min_score": 0.25, "max_context_tokens": 500},
        llm={"default_max_tokens": 100},
        api={"max_completion_tokens": 300},
    )
    assert _merge(settings) == EffectiveRuntime(
        retrieval_enabled=True,
        fallback_enabled=True,
        engine="primary",
        top_k=5,
        min_score=0.25,
        max_context_tokens=500,
        default_max_tokens=100,
        max_completion_tokens=300,
        user_tokens=settings.limits.user_tokens.tokens,
        tenant_tokens=settings.limits.tenant_tokens.tokens,
        allowed_places=(),
        rollout=None,
        version="g0.t0",
        decoding={"primary": Decoding(), "fallback": Decoding()},
    )
    assert _merge(_settings(**NO_FALLBACK)).fallback_enabled is False


def test_tenant_beats_global_beats_settings_field_by_field() -> None:
    runtime = _merge(
        _settings(retrieval={"top_k": 4}),
        global_doc={"retrieval": {"top_k": 8, "min_score": 0.6}, "features": {"fallback": False}},
        tenant_doc={"retrieval": {"top_k": 2}, "models": {"engine": "fallback"}},
        numbers=(2, 5),
    )
    assert runtime.top_k == 2  # the tenant's
    assert runtime.min_score == 0.6  # the global level's: the tenant left it unset
    assert runtime.fallback_enabled is False  # the global level's
    assert runtime.engine == "fallback"  # the tenant's
    assert runtime.max_context_tokens == 768  # the settings' default
    assert runtime.version == "g2.t5"


def test_the_tenants_rollout_replaces_the_global_one() -> None:
    settings = _settings()
    canary = {"rollout": {"percent": 30, "engine": "fallback"}}
    assert _merge(settings, global_doc=canary).rollout is not None
    opted_out = _merge(settings, global_doc=canary, tenant_doc={"rollout": {"percent": 0}})
    assert opted_out.rollout is None
    own = _merge(
        settings,
        global_doc=canary,
        tenant_doc={"rollout": {"percent": 5, "prompt_version": "pv_00aa"}},
    ).rollout
    assert own is not None
    assert (own.percent, own.prompt_version, own.engine) == (5, "pv_00aa", None)


def test_what_the_deployment_cannot_do_is_dropped() -> None:
    # Saved while a fallback existed; the settings have since lost it.
    saved = RuntimeOverrides.model_validate(
        {
            "models": {"engine": "fallback"},
            "features": {"fallback": True, "retrieval": True},
            "rollout": {"percent": 50, "engine": "fallback"},
        }
    )
    settings = _settings(llm={"fallback": None}, retrieval={"enabled": False})
    runtime = effective_runtime(settings, None, 0, saved, 3)
    assert runtime.engine == "primary"
    assert runtime.fallback_enabled is False
    assert runtime.retrieval_enabled is False
    assert runtime.rollout is None


def test_the_answer_budget_is_capped_by_a_lower_limit_from_another_level() -> None:
    runtime = _merge(
        _settings(),
        global_doc={"generation": {"max_completion_tokens": 200}},
        tenant_doc={"generation": {"default_max_tokens": 500}},
    )
    assert (runtime.default_max_tokens, runtime.max_completion_tokens) == (200, 200)


# --- cohorts ------------------------------------------------------------------------------


def test_a_user_stays_in_their_cohort() -> None:
    first = [cohort("acme", f"u_{i}", 37) for i in range(500)]
    assert first == [cohort("acme", f"u_{i}", 37) for i in range(500)]


@pytest.mark.parametrize("percent", [1, 10, 50, 90])
def test_the_canary_gets_roughly_its_share(percent: int) -> None:
    canary = sum(cohort("acme", f"u_{i:05d}", percent) == "canary" for i in range(10_000))
    # Binomial sd at 10k draws is at most 50: 4 sd either side.
    assert abs(canary - percent * 100) < 200


def test_raising_the_percent_only_adds_users() -> None:
    subjects = [f"u_{i}" for i in range(2_000)]
    at_10 = {s for s in subjects if cohort("acme", s, 10) == "canary"}
    at_30 = {s for s in subjects if cohort("acme", s, 30) == "canary"}
    assert at_10 < at_30


def test_cohorts_differ_between_tenants_and_cover_the_edges() -> None:
    subjects = [f"u_{i}" for i in range(2_000)]
    acme = {s for s in subjects if cohort("acme", s, 50) == "canary"}
    globex = {s for s in subjects if cohort("globex", s, 50) == "canary"}
    assert acme != globex
    assert {cohort("acme", s, 0) for s in subjects} == {"stable"}
    assert {cohort("acme", s, 100) for s in subjects} == {"canary"}
    with pytest.raises(ValueError, match=r"0\.\.100"):
        cohort("acme", "u_1", 101)


# --- routes -------------------------------------------------------------------------------


@pytest.fixture
def config_client(
    settings: Settings, keys: TestKeys, database: Database
) -> Iterator[tuple[TestClient[Litestar], RuntimeConfigStore]]:
    """Only the configuration routes, wired as ``api.app`` wires routes."""
    services = build_services(settings, keys, database, guard=KeywordGuard())
    trail = AuditTrail(database, services.audit)
    store = RuntimeConfigStore(database, settings, refresh_s=60.0)

    def _const(value: Any) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    def _principal(request: Request[Any, Any, Any]) -> Principal:
        return principal_of(request.scope)

    app = Litestar(
        route_handlers=[RuntimeConfigController],
        guards=[
            Gatekeeper(
                services.security.authenticator,
                services.security.rate_limiter,
                trail,
                services.metrics,
            )
        ],
        dependencies={
            "principal": Provide(_principal, sync_to_thread=False),
            "services": _const(services),
            "audit_trail": _const(trail),
            "runtime_config": _const(store),
        },
        exception_handlers=exception_handlers,
    )
    with TestClient(app=app) as client:
        yield client, store


async def _audit_events(database: Database) -> list[tuple[str, str, dict[str, Any]]]:
    async with database.reading() as connection:
        rows = (
            await connection.execute(
                select(audit_log.c.tenant, audit_log.c.event_type, audit_log.c.event).order_by(
                    audit_log.c.seq
                )
            )
        ).all()
    return [(r.tenant, r.event_type, json.loads(r.event)) for r in rows]


def _read_audit(
    client: TestClient[Litestar], database: Database
) -> list[tuple[str, str, dict[str, Any]]]:
    with client.portal() as portal:
        return portal.call(_audit_events, database)


def test_a_tenant_admin_changes_their_tenant_and_it_applies(
    config_client: tuple[TestClient[Litestar], RuntimeConfigStore], keys: TestKeys
) -> None:
    client, _ = config_client
    admin = keys.header("tenant_admin")
    before = client.get("/v1/config", headers=admin)
    assert before.status_code == 200
    assert before.json()["effective"]["top_k"] == 4
    assert before.json()["active"] == {"global": 0, "tenant": 0}

    saved = client.put(
        "/v1/config",
        headers=admin,
        json={"overrides": {"retrieval": {"top_k": 7}}, "note": "more context for HR"},
    )
    assert saved.status_code == 201, saved.text
    assert saved.json()["number"] == 1
    assert saved.json()["version"] == "g0.t1"
    assert saved.json()["effective"]["top_k"] == 7

    shown = client.get("/v1/config", headers=admin).json()
    assert shown["tenant"] == "default"
    assert shown["overrides"]["tenant"] == {"retrieval": {"top_k": 7}}
    assert shown["effective"]["version"] == "g0.t1"


def test_an_invalid_document_is_a_400_listing_the_problems(
    config_client: tuple[TestClient[Litestar], RuntimeConfigStore], keys: TestKeys
) -> None:
    client, _ = config_client
    response = client.put(
        "/v1/config",
        headers=keys.header("tenant_admin"),
        json={"overrides": {"retrieval": {"top_k": 0}, "rollout": {"percent": 5}}, "note": "x"},
    )
    assert response.status_code == 400
    body = response.json()
    assert "retrieval.top_k: must be at least 1 (got 0)" in body["detail"]
    assert "rollout: a canary needs" in body["detail"]
    versions = client.get("/v1/config/versions", headers=keys.header("tenant_admin")).json()
    assert versions["data"] == []


def test_rollback_to_an_earlier_version_is_recorded_as_such(
    config_client: tuple[TestClient[Litestar], RuntimeConfigStore],
    keys: TestKeys,
    database: Database,
) -> None:
    client, _ = config_client
    admin = keys.header("tenant_admin")
    for top_k in (6, 9):
        body = {"overrides": {"retrieval": {"top_k": top_k}}, "note": f"top_k {top_k}"}
        assert client.put("/v1/config", headers=admin, json=body).status_code == 201

    rolled = client.post(
        "/v1/config/versions/1/activate", headers=admin, json={"note": "9 was too many"}
    )
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["action"] == "rollback"
    assert rolled.json()["effective"]["top_k"] == 6
    listed = client.get("/v1/config/versions", headers=admin).json()["data"]
    assert [(v["number"], v["active"]) for v in listed] == [(2, False), (1, True)]
    assert listed[0]["note"] == "top_k 9"

    for number in (9, 2**40):
        missing = client.post(f"/v1/config/versions/{number}/activate", headers=admin)
        assert missing.status_code == 404
        assert f"No configuration version {number}" in missing.json()["detail"]
    assert client.post("/v1/config/versions/-1/activate", headers=admin).status_code == 400

    # Without a body; 0 removes the overrides.
    cleared = client.post("/v1/config/versions/0/activate", headers=admin)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["effective"]["top_k"] == 4

    events = _read_audit(client, database)
    changes = [(t, kind, e["number"]) for t, kind, e in events if kind.startswith("config.")]
    assert changes == [
        ("default", "config.version_created", 1),
        ("default", "config.version_created", 2),
        ("default", "config.activated", 1),
        ("default", "config.activated", 0),
    ]
    created = next(e for _, kind, e in events if kind == "config.version_created")
    assert created["tenant_changed"] == "default"
    assert created["overrides"] == {"retrieval": {"top_k": 6}}


def test_notes_are_scrubbed_of_personal_data(
    config_client: tuple[TestClient[Litestar], RuntimeConfigStore],
    keys: TestKeys,
    database: Database,
) -> None:
    client, _ = config_client
    admin = keys.header("tenant_admin")
    body = {"overrides": {}, "note": "asked by Ana Silva (ana.silva@example.com)"}
    assert client.put("/v1/config", headers=admin, json=body).status_code == 201
    note = client.get("/v1/config/versions", headers=admin).json()["data"][0]["note"]
    assert note == "asked by <PERSON_1> (<EMAIL_ADDRESS_1>)"
    audited = json.dumps(_read_audit(client, database))
    assert "Ana Silva" not in audited
    assert "ana.silva@example.com" not in audited


def test_tenant_admins_cannot_reach_other_tenants(
    config_client: tuple[TestClient[Litestar], RuntimeConfigStore], keys: TestKeys
) -> None:
    client, _ = config_client
    admin = keys.header("tenant_admin")
    for response in (
        client.get("/v1/config?tenant=globex", headers=admin),
        client.get("/v1/config?tenant=*", headers=admin),
        client.put("/v1/config?tenant=globex", headers=admin, json={"overrides": {}, "note": "x"}),
        client.post("/v1/config/versions/1/activate?tenant=globex", headers=admin),
    ):
        assert response.status_code == 403
        assert "own tenant" in response.json()["detail"]
    # Naming their own tenant is fine.
    assert client.get("/v1/config?tenant=default", headers=admin).status_code == 200
    # Staff and auditors are refused by the route policy.
    assert client.get("/v1/config", headers=keys.header("staff")).status_code == 403


def test_platform_admins_set_the_global_level_under_every_tenant(
    config_client: tuple[TestClient[Litestar], RuntimeConfigStore], keys: TestKeys
) -> None:
    client, _ = config_client
    platform = keys.header("platform_admin")
    saved = client.put(
        "/v1/config?tenant=*",
        headers=platform,
        json={"overrides": {"retrieval": {"top_k": 3, "min_score": 0.5}}, "note": "tighter"},
    )
    assert saved.status_code == 201, saved.text
    assert saved.json()["tenant"] == "*"
    globex = client.put(
        "/v1/config?tenant=globex",
        headers=platform,
        json={"overrides": {"retrieval": {"top_k": 10}}, "note": "globex wants more"},
    )
    assert globex.status_code == 201
    assert globex.json()["version"] == "g1.t1"
    assert globex.json()["effective"]["top_k"] == 10
    assert globex.json()["effective"]["min_score"] == 0.5

    # The tenant admin of "default" sees the global level applied to them.
    mine = client.get("/v1/config", headers=keys.header("tenant_admin")).json()
    assert mine["effective"]["top_k"] == 3
    assert mine["active"] == {"global": 1, "tenant": 0}
    assert mine["overrides"]["global"] == {"retrieval": {"top_k": 3, "min_score": 0.5}}


def test_a_body_with_unknown_fields_or_no_note_is_refused(
    config_client: tuple[TestClient[Litestar], RuntimeConfigStore], keys: TestKeys
) -> None:
    client, _ = config_client
    admin = keys.header("tenant_admin")
    no_note = client.put("/v1/config", headers=admin, json={"overrides": {}, "note": " "})
    assert no_note.status_code == 400
    assert "note" in no_note.json()["detail"]
    extra = client.put(
        "/v1/config", headers=admin, json={"overrides": {}, "note": "n", "tenant": "globex"}
    )
    assert extra.status_code == 400


def test_token_quotas_merge_and_keep_unlimited_when_nobody_sets_one() -> None:
    settings = _settings()
    base = effective_runtime(settings, None, 0, None, 0)
    assert base.user_tokens == settings.limits.user_tokens.tokens
    assert base.tenant_tokens == settings.limits.tenant_tokens.tokens
    both = effective_runtime(
        settings,
        validate_overrides({"limits": {"user_tokens": 900, "tenant_tokens": 50_000}}, settings),
        1,
        validate_overrides({"limits": {"user_tokens": 300}}, settings),
        1,
    )
    assert (both.user_tokens, both.tenant_tokens) == (300, 50_000)
    unlimited = settings.model_copy(
        update={
            "limits": settings.limits.model_copy(
                update={
                    "tenant_tokens": settings.limits.tenant_tokens.model_copy(
                        update={"tokens": None}
                    )
                }
            )
        }
    )
    assert effective_runtime(unlimited, None, 0, None, 0).tenant_tokens is None


def test_allowed_places_add_up_across_levels_and_protected_ones_win() -> None:
    runtime = _merge(
        _settings(),
        global_doc={"pii": {"allow_places": ["Lisbon", "Toronto"]}},
        tenant_doc={"pii": {"allow_places": ["Nairobi", "toronto"], "protect_places": ["LISBON"]}},
        numbers=(1, 3),
    )
    assert runtime.allowed_places == ("Nairobi", "toronto")
    assert runtime.as_dict()["allowed_places"] == ["Nairobi", "toronto"]
    assert _merge(_settings()).allowed_places == ()


def test_a_place_that_is_not_a_name_is_refused_with_its_path() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_overrides({"pii": {"allow_places": ["Toronto", "<script>", ""]}}, _settings())
    problems = caught.value.extra["problems"]
    assert problems == [
        "pii.allow_places.1: must be a place name of 1-100 characters, no < > or control "
        "characters",
        "pii.allow_places.2: must be a place name of 1-100 characters, no < > or control "
        "characters",
    ]


def test_decoding_penalties_are_per_engine_from_the_model_settings_then_global_then_tenant() -> (
    None
):
    settings = _settings(
        llm={
            "primary": {"decoding": {"repetition_penalty": 1.2, "frequency_penalty": 0.3}},
            "fallback": {"engine": "transformers", "decoding": {"presence_penalty": 0.5}},
        }
    )
    runtime = _merge(
        settings,
        global_doc={"decoding": {"primary": {"repetition_penalty": 1.1}}},
        tenant_doc={"decoding": {"fallback": {"repetition_penalty": 1.3}}},
        numbers=(1, 1),
    )
    assert runtime.decoding_for("primary") == Decoding(1.1, 0.3, 0.0)
    assert runtime.decoding_for("fallback") == Decoding(1.3, 0.0, 0.5)
    assert runtime.as_dict()["decoding"]["primary"] == {
        "repetition_penalty": 1.1,
        "frequency_penalty": 0.3,
        "presence_penalty": 0.0,
    }


def test_decoding_overrides_are_checked() -> None:
    with pytest.raises(InvalidRequest) as raised:
        validate_overrides(
            {"decoding": {"primary": {"repetition_penalty": 0, "top_k": 3}}}, _settings()
        )
    problems = raised.value.extra["problems"]
    assert any(
        p.startswith("decoding.primary.repetition_penalty: Input should be greater than 0")
        for p in problems
    )
    assert any(
        "decoding.primary.top_k: unknown setting; known here: repetition_penalty" in p
        for p in problems
    )
    with pytest.raises(InvalidRequest, match=r"decoding\.fallback needs llm\.fallback configured"):
        validate_overrides(
            {"decoding": {"fallback": {"repetition_penalty": 1.2}}}, _settings(**NO_FALLBACK)
        )
