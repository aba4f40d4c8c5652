"""The chat API over scripted models: OpenAI shapes, validation, problem details, fallback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.services import Security
from api.sse import iter_frames
from core.db import Database
from core.settings import Settings
from tests.fakes import ScriptedLLM, TestKeys, build_services
from tests.unit.conftest import CANARY

URL = "/v1/chat/completions"


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": "test-model", "messages": [{"role": "user", "content": "Hi"}]}
    base.update(overrides)
    return base


def assert_problem(response: Any, status: int, *needles: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert problem["request_id"] == response.headers["x-request-id"]
    assert problem["request_id"]
    for needle in needles:
        assert needle in problem["detail"], problem["detail"]
    assert "Traceback" not in response.text
    return problem


def test_non_streamed_completion_has_openai_shape_and_usage(client: TestClient) -> None:
    response = client.post(URL, json=body())
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello from the scripted model",
    }
    assert data["choices"][0]["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["completion_tokens"] == 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + 5
    assert response.headers["x-enclave-engine"] == "scripted"
    assert response.headers["x-enclave-config-version"].startswith("cfg_")


def test_streamed_completion_frames_and_usage(client: TestClient) -> None:
    response = client.post(URL, json=body(stream=True, stream_options={"include_usage": True}))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = iter_frames(response.content)
    assert frames[-1] == b"[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello from the scripted model"
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-2]["choices"] == []
    assert chunks[-2]["usage"]["completion_tokens"] == 5
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["enclave"]["decision"] == "answer"


def test_stream_without_usage_has_no_usage_chunk(client: TestClient) -> None:
    frames = iter_frames(client.post(URL, json=body(stream=True)).content)
    chunks = [json.loads(f) for f in frames[:-1]]
    assert all(c.get("usage") is None for c in chunks)


def test_sampling_parameters_reach_the_engine(client: TestClient, primary: ScriptedLLM) -> None:
    client.post(URL, json=body(temperature=0, top_p=0.5, max_tokens=3, stop=["x"], seed=7))
    sampling = primary.requests[-1].sampling
    assert (sampling.temperature, sampling.top_p, sampling.max_tokens) == (0, 0.5, 3)
    assert sampling.stop == ("x",)
    assert sampling.seed == 7
    client.post(URL, json=body(max_completion_tokens=4, ignore_eos=True))
    assert primary.requests[-1].sampling.max_tokens == 4
    assert primary.requests[-1].sampling.ignore_eos is True


def test_default_answer_budget_comes_from_settings(
    client: TestClient, primary: ScriptedLLM
) -> None:
    client.post(URL, json=body())
    assert primary.requests[-1].sampling.max_tokens == 32


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "'wizard' is not supported"),
        ({"messages": [{"role": "user", "content": "   "}]}, "is empty"),
        ({"messages": [{"role": "user"}]}, "is missing"),
        ({"messages": []}, "at least one message"),
        ({"messages": [{"role": "user", "content": "x" * 601}]}, "at most 600 allowed"),
        ({"messages": [{"role": "user", "content": "a"}] * 9}, "at most 8 allowed"),
        (
            {"messages": [{"role": "assistant", "content": "a"}]},
            "last message must come from the user",
        ),
        ({"n": 2}, "only n=1"),
        ({"max_tokens": 65}, "above this server's limit of 64"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "only text parts",
        ),
    ],
)
def test_invalid_requests_get_problem_details(
    client: TestClient, overrides: dict[str, Any], needle: str
) -> None:
    assert_problem(client.post(URL, json=body(**overrides)), 400, needle)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"presence_penalty": "high"}, "presence_penalty"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"model": 5}, "model"),
    ],
)
def test_out_of_range_parameters_name_the_field(
    client: TestClient, overrides: dict[str, Any], field: str
) -> None:
    problem = assert_problem(client.post(URL, json=body(**overrides)), 400)
    assert field in problem["detail"]


@pytest.mark.parametrize(
    ("overrides", "bound"),
    [
        ({"frequency_penalty": 2.01}, "<= 2.0"),
        ({"frequency_penalty": -2.5}, ">= -2.0"),
        ({"presence_penalty": 3}, "<= 2.0"),
        ({"presence_penalty": -2.01}, ">= -2.0"),
    ],
)
def test_penalties_outside_openais_range_are_refused(
    client: TestClient, primary: ScriptedLLM, overrides: dict[str, Any], bound: str
) -> None:
    problem = assert_problem(client.post(URL, json=body(**overrides)), 400)
    (name,) = overrides
    assert problem["errors"] == [{"field": name, "message": f"Expected `float` {bound}"}]
    assert f"{name}: Expected `float` {bound}" in problem["detail"]
    assert primary.requests == []


def test_several_problems_are_reported_together(client: TestClient) -> None:
    response = client.post(URL, json=body(messages=[{"role": "bot", "content": ""}], n=3))
    problem = assert_problem(response, 400, "'bot' is not supported", "only n=1")
    assert len(problem["errors"]) >= 2


def test_text_parts_are_joined(client: TestClient, primary: ScriptedLLM) -> None:
    content = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]
    assert (
        client.post(URL, json=body(messages=[{"role": "user", "content": content}])).status_code
        == 200
    )
    assert primary.requests[-1].messages[-1].content == "Hello there"


def test_control_characters_are_stripped(client: TestClient, primary: ScriptedLLM) -> None:
    client.post(URL, json=body(messages=[{"role": "user", "content": "a\x00b\x1bc\nd"}]))
    assert primary.requests[-1].messages[-1].content == "abc\nd"


def test_unknown_model_is_404_listing_available(client: TestClient) -> None:
    problem = assert_problem(client.post(URL, json=body(model="gpt-9")), 404, "'gpt-9'")
    assert problem["available_models"] == ["test-model"]


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(URL, content=b'{"model": ', headers={"content-type": "application/json"})
    assert_problem(response, 400)


def test_oversize_body_is_413(client: TestClient) -> None:
    big = body(messages=[{"role": "user", "content": "x" * 5000}])
    assert_problem(client.post(URL, json=big), 413, "larger than this server accepts")


def test_message_too_long_for_window_is_400_naming_limit(client: TestClient) -> None:
    words = " ".join(["w"] * 250)
    problem = assert_problem(
        client.post(URL, json=body(messages=[{"role": "user", "content": words}])),
        400,
        "prompt tokens",
    )
    assert problem["max_prompt_tokens"] == 256 - 16


def test_client_request_id_is_adopted(client: TestClient) -> None:
    response = client.post(URL, json=body(model="nope"), headers={"x-request-id": "abc12345-trace"})
    assert response.headers["x-request-id"] == "abc12345-trace"
    assert response.json()["request_id"] == "abc12345-trace"


def test_hostile_request_id_is_replaced(client: TestClient) -> None:
    response = client.post(URL, json=body(model="nope"), headers={"x-request-id": "x y"})
    assert response.headers["x-request-id"].startswith("req_")


def test_fallback_answers_when_primary_fails_before_first_token(
    client: TestClient, primary: ScriptedLLM
) -> None:
    primary.fail_before_first = True
    response = client.post(URL, json=body())
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Fallback answer here"
    assert response.headers["x-enclave-engine"] == "scripted-fallback"
    assert response.headers["x-enclave-fallback"] == "RuntimeError"


def test_both_engines_down_is_503_with_retry_after(
    client: TestClient, primary: ScriptedLLM, fallback: ScriptedLLM
) -> None:
    primary.fail_before_first = fallback.fail_before_first = True
    response = client.post(URL, json=body(stream=True))
    assert_problem(response, 503, "Retry")
    assert response.headers["retry-after"] == "5"


def test_mid_stream_failure_ends_with_an_error_event(
    client: TestClient, primary: ScriptedLLM, fallback: ScriptedLLM
) -> None:
    primary.fail_after = 2
    fallback.fail_before_first = True  # a working fallback would finish the answer
    frames = iter_frames(client.post(URL, json=body(stream=True)).content)
    last = json.loads(frames[-1])
    assert last["error"]["type"] == "generation-interrupted"
    assert last["error"]["request_id"]
    assert b"[DONE]" not in frames


def test_unknown_route_and_method_are_problem_details(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing"), 404, "/v1/nothing")
    assert_problem(client.get(URL), 405)


def test_models_lists_the_served_model(client: TestClient) -> None:
    data = client.get("/v1/models").json()
    assert [m["id"] for m in data["data"]] == ["test-model"]
    assert data["object"] == "list"


def test_probes(client: TestClient, fallback: ScriptedLLM) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    fallback.healthy = False
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["llm_fallback"].startswith("unhealthy")


def test_info_reports_config_version(client: TestClient) -> None:
    info = client.get("/v1/info").json()
    assert info["config_version"].startswith("cfg_")
    assert info["engines"]["primary"]["engine"] == "scripted"


def test_openapi_schema_is_served(client: TestClient) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert "/v1/chat/completions" in schema["paths"]


def test_mid_stream_fallback_is_announced_and_the_answer_completes(
    client: TestClient, primary: ScriptedLLM, fallback: ScriptedLLM
) -> None:
    primary.fail_after = 2
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": "test-model",
            "stream": True,
            "messages": [{"role": "user", "content": "tell me about the vpn"}],
        },
    )
    chunks = [json.loads(f) for f in iter_frames(response.content)[:-1]]
    events = [
        c["enclave"] for c in chunks if not c["choices"] and "event" in (c.get("enclave") or {})
    ]
    assert events == [{"event": "fallback", "reason": "RuntimeError", "when": "mid_stream"}]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.startswith("Hello from")  # the primary's first words, then the fallback's
    assert "Fallback answer" in text
    lineage = chunks[-1]["enclave"]
    assert lineage["fallback_when"] == "mid_stream"


def test_the_answer_language_reaches_the_prompt_with_or_without_a_region(
    client: TestClient, primary: ScriptedLLM
) -> None:
    # A profile may hold a regional tag (de-CH): the chat request that carries it is valid.
    for tag, recorded in (("de-CH", "de-CH"), ("DE", "de")):
        response = client.post("/v1/chat/completions", json=body(language=tag))
        assert response.status_code == 200, response.text
        assert "Answer in German" in primary.requests[-1].messages[0].content
        assert response.json()["enclave"]["language"] == recorded
    client.post("/v1/chat/completions", json=body())
    assert "Answer in" not in primary.requests[-1].messages[0].content
    assert_problem(
        client.post("/v1/chat/completions", json=body(language="tlh")),
        400,
        "language",
        "de-CH",
    )


LOOPING_REPLY = (
    "Ask the front desk for a badge. You can also ask your manager for a badge. "
    "You can also ask your manager for a badge. You can also ask your manager for a badge. "
    + " ".join(["You can also ask your manager for a badge."] * 20)
)


def test_a_looping_answer_is_cut_told_and_the_rest_not_generated_or_charged(
    client: TestClient, primary: ScriptedLLM
) -> None:
    primary.reply = LOOPING_REPLY
    data = client.post(URL, json=body(max_tokens=60)).json()
    assert data["choices"][0]["message"]["content"].rstrip() == (
        "Ask the front desk for a badge. You can also ask your manager for a badge."
    )
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["enclave"]["guard"]["reply_cut_for_repetition"] is True
    assert data["enclave"]["guard"]["reply_cut_for_leak"] is False
    # The engine stopped when the loop was seen: the client pays for what was generated
    # until then (the word after the repeated sentence), not for the 60-token budget.
    assert primary.cancelled == 1
    assert data["usage"]["completion_tokens"] == 26  # 25 words, then " You"


def test_a_looping_answer_is_cut_in_a_stream_too(client: TestClient, primary: ScriptedLLM) -> None:
    primary.reply = LOOPING_REPLY
    response = client.post(URL, json=body(stream=True, max_tokens=60))
    chunks = [json.loads(f) for f in iter_frames(response.content)[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.rstrip() == (
        "Ask the front desk for a badge. You can also ask your manager for a badge."
    )
    assert chunks[-1]["enclave"]["guard"]["reply_cut_for_repetition"] is True
    assert primary.cancelled == 1


def test_with_the_loop_guard_off_a_forced_length_answer_runs_to_its_budget(
    settings: Settings,
    primary: ScriptedLLM,
    fallback: ScriptedLLM,
    keys: TestKeys,
    database: Database,
    security: Security,
) -> None:
    # The serving benchmark asks ignore_eos answers of a fixed length from both Enclave and
    # the raw engine; with guard.cut_repetition off, Enclave generates all of them too.
    unguarded = settings.model_copy(
        update={"guard": settings.guard.model_copy(update={"cut_repetition": False})}
    )
    services = build_services(
        unguarded, keys, database, primary=primary, fallback=fallback,
        canary_token=CANARY, security=security,
    )  # fmt: skip
    primary.reply = LOOPING_REPLY
    with TestClient(app=create_app(services)) as unguarded_client:
        unguarded_client.headers.update(keys.header("staff"))
        data = unguarded_client.post(URL, json=body(max_tokens=60, ignore_eos=True)).json()
    assert data["enclave"]["guard"]["reply_cut_for_repetition"] is False
    assert data["usage"]["completion_tokens"] == 60
    assert data["choices"][0]["message"]["content"].count("ask your manager for a badge") > 3


def test_an_answer_that_does_not_loop_is_not_marked(client: TestClient) -> None:
    data = client.post(URL, json=body()).json()
    assert data["enclave"]["guard"]["reply_cut_for_repetition"] is False


def test_each_engine_answers_with_its_models_repetition_penalties(
    primary: ScriptedLLM, fallback: ScriptedLLM, client: TestClient
) -> None:
    data = client.post(URL, json=body()).json()
    sampling = primary.requests[-1].sampling
    # The unit settings give each model its own penalties (tests/unit/conftest.py).
    assert (sampling.repetition_penalty, sampling.frequency_penalty) == (1.15, 0.2)
    assert sampling.presence_penalty == 0.0
    assert data["enclave"]["decoding"] == {
        "primary": {"repetition_penalty": 1.15, "frequency_penalty": 0.2, "presence_penalty": 0.0},
        "fallback": {"repetition_penalty": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.4},
    }
    assert data["enclave"]["decoding_requested"] == {}
    primary.fail_before_first = True
    assert client.post(URL, json=body()).json()["enclave"]["engine"] == "scripted-fallback"
    rescued = fallback.requests[-1].sampling
    assert (rescued.repetition_penalty, rescued.presence_penalty) == (1.0, 0.4)


def test_the_requests_own_penalties_reach_the_engine_and_the_lineage(
    primary: ScriptedLLM, client: TestClient
) -> None:
    data = client.post(URL, json=body(frequency_penalty=1.5, presence_penalty=-0.5)).json()
    sampling = primary.requests[-1].sampling
    assert (sampling.frequency_penalty, sampling.presence_penalty) == (1.5, -0.5)
    # repetition_penalty is not an OpenAI field: the model's configured one still applies.
    assert sampling.repetition_penalty == 1.15
    # The lineage: what each engine would apply, and which values the client chose.
    assert data["enclave"]["decoding"] == {
        "primary": {"repetition_penalty": 1.15, "frequency_penalty": 1.5, "presence_penalty": -0.5},
        "fallback": {"repetition_penalty": 1.0, "frequency_penalty": 1.5, "presence_penalty": -0.5},
    }
    assert data["enclave"]["decoding_requested"] == {
        "frequency_penalty": 1.5,
        "presence_penalty": -0.5,
    }


def test_a_penalty_the_request_leaves_out_keeps_the_configured_one(
    primary: ScriptedLLM, fallback: ScriptedLLM, client: TestClient
) -> None:
    # 0 is a choice (off), not "unset": it replaces the primary's configured 0.2.
    data = client.post(URL, json=body(frequency_penalty=0)).json()
    sampling = primary.requests[-1].sampling
    assert (sampling.frequency_penalty, sampling.presence_penalty) == (0.0, 0.0)
    assert data["enclave"]["decoding_requested"] == {"frequency_penalty": 0.0}
    primary.fail_before_first = True
    client.post(URL, json=body(frequency_penalty=0))
    rescued = fallback.requests[-1].sampling
    # The fallback keeps its own presence penalty (0.4): the request did not set one.
    assert (rescued.frequency_penalty, rescued.presence_penalty) == (0.0, 0.4)


@pytest.mark.parametrize("fail", ["before_first_token", "mid_stream"])
def test_the_fallback_answers_with_the_requests_penalties(
    primary: ScriptedLLM, fallback: ScriptedLLM, client: TestClient, fail: str
) -> None:
    if fail == "mid_stream":
        primary.fail_after = 2
    else:
        primary.fail_before_first = True
    data = client.post(URL, json=body(frequency_penalty=0.7, presence_penalty=1.1)).json()
    assert data["enclave"]["engine"] == "scripted-fallback"
    assert data["enclave"]["fallback_when"] == fail
    rescued = fallback.requests[-1].sampling
    assert (rescued.frequency_penalty, rescued.presence_penalty) == (0.7, 1.1)
    assert rescued.repetition_penalty == 1.0  # the fallback model's configured one
