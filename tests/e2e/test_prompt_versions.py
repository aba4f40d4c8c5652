"""Prompt versions, runtime configuration and quality signals on the real stack (issue 8).

Activation runs the chat prompt's regression suite on the live model (temperature 0, fixed
seed): a passing version goes live for its client within seconds, without restart; a
failing one is refused naming its cases; rollback brings the previous one back. Runtime
configuration changes apply to the next request of the tenant only. Feedback and the
implicit signals are recorded and aggregated in the quality view.

Prompt versions here live at a client level (``client: e2e-...``) of tenant ``default``
(where the handbook the suite cites is seeded), so other tests' answers never change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.e2e.stack import RunningStack, issue_key

pytestmark = pytest.mark.e2e

Chat = Callable[..., dict[str, Any]]


def _client(stack: RunningStack, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=stack.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=600
    )


@pytest.fixture(scope="module")
def default_admin(stack: RunningStack) -> httpx.Client:
    return _client(stack, issue_key(stack.base_url, stack.admin_key, "default", "tenant_admin"))


@pytest.fixture(scope="module")
def default_staff(stack: RunningStack) -> str:
    return issue_key(stack.base_url, stack.admin_key, "default", "staff")


def _chat(
    stack: RunningStack, key: str, model: str, text: str, **extra: Any
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """One short answer at temperature 0: its text, lineage and response headers."""
    client = OpenAI(base_url=f"{stack.base_url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        temperature=0,
        seed=7,
        max_tokens=16,
        extra_body=extra or None,
    )
    completion = raw.parse()
    lineage = (completion.model_extra or {})["enclave"]
    return completion.choices[0].message.content or "", lineage, dict(raw.headers)


def test_a_version_that_passes_its_suite_goes_live_and_rolls_back(
    stack: RunningStack, default_admin: httpx.Client, default_staff: str, model_name: str
) -> None:
    app = "e2e-live"
    created = default_admin.post(
        "/v1/prompts/chat/versions",
        json={
            "client": app,
            "variables": {"organisation": {"type": "str", "default": "Northwind Analytics Group"}},
            "parts": {"welcome": "Welcome to the {{ organisation }} assistant."},
            "note": "group name after the merger",
        },
    )
    assert created.status_code == 201, created.text
    version = created.json()
    assert version["number"] == 1
    assert version["active"] is False
    # Not active yet: the client still runs the global prompt.
    _, before, _ = _chat(stack, default_staff, model_name, "thanks, how are you?", client=app)
    assert before["prompt_version"].startswith("global@")

    diff = default_admin.get(
        "/v1/prompts/chat/diff", params={"from": "global", "to": version["id"]}
    )
    assert diff.status_code == 200
    assert "+" in diff.json()["diff"]
    assert "Northwind Analytics Group" in diff.json()["diff"]

    activated = default_admin.post(f"/v1/prompts/chat/versions/{version['id']}/activate")
    assert activated.status_code == 200, activated.text
    suite = activated.json()["suite"]
    assert suite["ok"] is True
    assert suite["failed"] == []
    # The suite really ran on the model: the handbook case cites its document.
    assert "chat/vpn-question-cites-the-vpn-guide" in suite["passed"]
    assert len(suite["passed"]) >= 6

    deadline = time.monotonic() + 10
    while True:
        _, lineage, headers = _chat(
            stack, default_staff, model_name, "thanks, how are you?", client=app
        )
        if lineage["prompt_version"] == version["id"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert lineage["prompt_version"] == version["id"]
    assert headers["x-enclave-prompt-version"] == version["id"]
    assert [link["scope"] for link in lineage["prompt_chain"]] == ["global", "client"]
    # Other applications of the tenant keep the global prompt.
    _, other, _ = _chat(stack, default_staff, model_name, "thanks, how are you?")
    assert other["prompt_version"].startswith("global@")

    listed = default_admin.get("/v1/prompts/chat/versions", params={"client": app}).json()
    assert [(v["number"], v["active"]) for v in listed["data"]] == [(1, True)]
    assert listed["data"][0]["last_check"]["ok"] is True

    rolled = default_admin.post("/v1/prompts/chat/rollback", json={"client": app})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["from"] == version["id"]
    assert rolled.json()["to"] is None  # nothing before it: the client inherits again
    _, after, _ = _chat(stack, default_staff, model_name, "thanks, how are you?", client=app)
    assert after["prompt_version"].startswith("global@")

    trail = _audit_events(stack, {"prompt.activated", "prompt.rolled_back"})
    assert {"prompt.activated", "prompt.rolled_back"} <= trail


def test_a_version_failing_its_suite_is_refused_naming_the_cases(
    stack: RunningStack, default_admin: httpx.Client, default_staff: str, model_name: str
) -> None:
    app = "e2e-refused"
    created = default_admin.post(
        "/v1/prompts/chat/versions",
        json={
            "client": app,
            # A blocked reply that gives away that instructions exist: the suite forbids it.
            "parts": {"blocked": "Blocked: that would reveal my Internal reference."},
            "note": "more explicit block message",
        },
    )
    assert created.status_code == 201, created.text
    version_id = created.json()["id"]
    refused = default_admin.post(f"/v1/prompts/chat/versions/{version_id}/activate")
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["request_id"]
    assert "chat/injection-is-blocked" in problem["detail"]
    failed = [case["case"] for case in problem["suite"]["failed"]]
    assert failed == ["chat/injection-is-blocked"]
    _, lineage, _ = _chat(stack, default_staff, model_name, "thanks, how are you?", client=app)
    assert lineage["prompt_version"].startswith("global@")
    shown = default_admin.get(f"/v1/prompts/chat/versions/{version_id}").json()
    assert shown["active"] is False
    assert shown["last_check"]["ok"] is False


def test_unsafe_or_undeclared_templates_are_refused_at_save_time(
    default_admin: httpx.Client,
) -> None:
    escape = default_admin.post(
        "/v1/prompts/chat/versions",
        json={"parts": {"system": "Hi {{ ''.__class__.__mro__ }}"}, "note": "x"},
    )
    assert escape.status_code == 400
    assert "attribute '__class__' is not allowed" in escape.json()["detail"]
    assert "object" not in escape.json()["detail"]  # nothing of Python's internals leaks
    undeclared = default_admin.post(
        "/v1/prompts/chat/versions",
        json={"parts": {"welcome": "Hello {{ department }}"}, "note": "x"},
    )
    assert undeclared.status_code == 400
    assert "department" in undeclared.json()["detail"]
    listed = default_admin.get("/v1/prompts/chat/versions").json()["data"]
    assert all(v["client"] is not None for v in listed)  # nothing stored at tenant level


def test_runtime_configuration_applies_without_restart_and_rolls_back(
    stack: RunningStack, model_name: str
) -> None:
    tenant = "e2e-config"
    admin = _client(stack, issue_key(stack.base_url, stack.admin_key, tenant, "tenant_admin"))
    staff = issue_key(stack.base_url, stack.admin_key, tenant, "staff")
    _, first, headers = _chat(stack, staff, model_name, "thanks, how are you?")
    assert first["config_version"].endswith(".g0.t0")
    assert headers["x-enclave-config-version"] == first["config_version"]

    saved = admin.put(
        "/v1/config",
        json={
            "overrides": {
                "generation": {"max_completion_tokens": 8, "default_max_tokens": 8},
                "rollout": {"percent": 100, "engine": "fallback"},
            },
            "note": "try the small model on everyone, short answers",
        },
    )
    assert saved.status_code == 201, saved.text
    assert saved.json()["number"] == 1

    _, canary, _ = _chat(stack, staff, model_name, "thanks, how are you?", max_tokens=8)
    assert canary["config_version"].endswith(".g0.t1")
    assert canary["cohort"] == "canary"
    assert canary["engine"] == "transformers"
    too_long = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {staff}"},
        json={
            "model": model_name,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 16,
        },
        timeout=60,
    )
    assert too_long.status_code == 400
    assert "limit of 8" in too_long.json()["detail"]
    # Other tenants are untouched.
    other = issue_key(stack.base_url, stack.admin_key, "e2e-config-other", "staff")
    _, elsewhere, _ = _chat(stack, other, model_name, "thanks, how are you?")
    assert elsewhere["config_version"].endswith(".g0.t0")
    assert elsewhere["cohort"] is None

    back = admin.post("/v1/config/versions/0/activate", json={"note": "back to defaults"})
    assert back.status_code == 200, back.text
    _, restored, _ = _chat(stack, staff, model_name, "thanks, how are you?")
    assert restored["config_version"].endswith(".g0.t0")
    assert restored["engine"] == "vllm"
    versions = admin.get("/v1/config/versions").json()
    assert [v["number"] for v in versions["data"]] == [1]
    assert versions["data"][0]["active"] is False


def test_feedback_and_implicit_signals_reach_the_quality_view(
    stack: RunningStack, model_name: str
) -> None:
    tenant = "e2e-quality"
    admin = _client(stack, issue_key(stack.base_url, stack.admin_key, tenant, "tenant_admin"))
    key = issue_key(stack.base_url, stack.admin_key, tenant, "staff")
    staff = _client(stack, key)
    _, first, _ = _chat(stack, key, model_name, "How do I reset my password?")
    rated = staff.post(
        "/v1/feedback",
        json={
            "request_id": first["request_id"],
            "rating": "down",
            "comment": "Wrong steps; Marta Lindqvist showed me the right ones.",
        },
    )
    assert rated.status_code == 201, rated.text
    assert "Marta" not in rated.json()["comment"]
    assert "<PERSON_1>" in rated.json()["comment"]
    copied = staff.post("/v1/signals", json={"request_id": first["request_id"], "kind": "copy"})
    assert copied.status_code == 202, copied.text

    # A rephrase: the same question again, reworded, in the same conversation, at once.
    conversation = first["conversation_id"]
    _chat(
        stack,
        key,
        model_name,
        "How can I reset my password please?",
        conversation_id=conversation,
    )
    # An abandoned answer: the client leaves after the first chunk.
    with staff.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": model_name,
            "messages": [{"role": "user", "content": "Write a long story about the office."}],
            "max_tokens": 200,
            "stream": True,
        },
    ) as streamed:
        assert streamed.status_code == 200
        next(streamed.iter_lines())

    deadline = time.monotonic() + 20
    while True:
        view = admin.get("/v1/quality", params={"days": 2}).json()
        totals = _signal_totals(view)
        if (totals.get("abandoned") and totals.get("rephrase")) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert totals["thumbs_down"] == 1
    assert totals["copy"] == 1
    assert totals["rephrase"] == 1
    assert totals["abandoned"] == 1
    today = [row for row in view["days"] if row["answers"]]
    assert sum(row["answers"] for row in today) == 2
    assert any(row["satisfaction_rate"] == 0.0 for row in today)
    assert all(row["prompt_version"].startswith("global@") for row in today)
    # Another tenant's admin sees none of it.
    stranger = _client(
        stack, issue_key(stack.base_url, stack.admin_key, "e2e-quality-other", "tenant_admin")
    )
    assert _signal_totals(stranger.get("/v1/quality", params={"days": 2}).json()) == {}


def _signal_totals(view: dict[str, Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in view["days"]:
        for kind, count in row["signals"].items():
            if count:
                totals[kind] = totals.get(kind, 0) + count
    return totals


def _audit_events(stack: RunningStack, wanted: set[str]) -> set[str]:
    auditor = issue_key(stack.base_url, stack.admin_key, "default", "auditor")
    found = set()
    for event_type in sorted(wanted):
        response = httpx.get(
            f"{stack.base_url}/v1/audit/records",
            headers={"Authorization": f"Bearer {auditor}"},
            params={"event_type": event_type},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        found |= {r["event_type"] for r in response.json()["data"]}
    return found
