"""The whole stack through HTTP with the real `openai` client."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.stack import RunningStack

Auth = Callable[[str], dict[str, str]]

pytestmark = pytest.mark.e2e

QUESTION = [{"role": "user", "content": "What is 2 plus 2? Answer with the number."}]


def test_stack_started_within_three_minutes(stack: RunningStack) -> None:
    assert stack.start_seconds < 180, f"took {stack.start_seconds:.0f}s to become ready"


def test_streamed_chat(client: OpenAI, model_name: str) -> None:
    stream = client.chat.completions.create(
        model=model_name,
        messages=QUESTION,
        stream=True,
        max_tokens=32,
        temperature=0,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    text = "".join(pieces)
    assert "4" in text
    assert len([p for p in pieces if p]) > 1, "the answer should stream in several chunks"
    assert finish in {"stop", "length"}
    assert usage is not None
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_non_streamed_chat(client: OpenAI, model_name: str) -> None:
    completion = client.chat.completions.create(
        model=model_name, messages=QUESTION, max_tokens=32, temperature=0, seed=1
    )
    assert "4" in (completion.choices[0].message.content or "")
    lineage = (completion.model_extra or {})["enclave"]
    assert lineage["decision"] == "answer"
    assert lineage["engine"] == "vllm"
    assert lineage["config_version"].startswith("cfg_")
    assert completion.choices[0].finish_reason in {"stop", "length"}
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 32


def test_max_tokens_and_stop(client: OpenAI, model_name: str) -> None:
    completion = client.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "Write a long poem."}],
        max_tokens=5,
        temperature=0,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5


def test_models_list(client: OpenAI, model_name: str) -> None:
    assert [m.id for m in client.models.list()] == [model_name]


def test_wrong_model_name(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    body = caught.value.body
    assert isinstance(body, dict)
    assert "gpt-4o" in body["detail"]
    assert body["request_id"]
    assert caught.value.response.headers["x-request-id"] == body["request_id"]


def test_malformed_requests(
    client: OpenAI, model_name: str, stack: RunningStack, auth: Auth
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_name, messages=QUESTION, temperature=7)
    assert "temperature" in str(caught.value.body)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=model_name, messages=[{"role": "tool", "content": "x", "tool_call_id": "1"}]
        )
    response = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json", **auth("staff")},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["request_id"]


def test_probes_and_info(stack: RunningStack, auth: Auth) -> None:
    assert httpx.get(f"{stack.base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.base_url}/readyz").json()
    assert ready["checks"] == {
        "llm_primary": "ok",
        "llm_fallback": "ok",
        "guards": "ok",
        "retriever": "ok",
    }
    assert httpx.get(f"{stack.base_url}/v1/info").status_code == 401
    info = httpx.get(f"{stack.base_url}/v1/info", headers=auth("auditor")).json()
    assert info["config_version"].startswith("cfg_")
    assert info["engines"]["primary"]["engine"] == "vllm"
    assert info["engines"]["fallback"]["engine"] == "transformers"
    assert '"config_version"' in stack.log_text()  # logged at start
    assert info["config_version"] in stack.log_text()


def _running(stack: RunningStack) -> int:
    info = httpx.get(
        f"{stack.base_url}/v1/info", headers={"Authorization": f"Bearer {stack.admin_key}"}
    )
    return int(info.json()["engines"]["primary"]["running_requests"])


def test_client_disconnect_cancels_generation(
    stack: RunningStack, model_name: str, auth: Auth
) -> None:
    body = {
        "model": model_name,
        "stream": True,
        "max_tokens": 1000,
        "ignore_eos": True,  # vLLM's extension: the answer cannot end on its own
        "messages": [{"role": "user", "content": "Write a very long essay about the ocean."}],
    }
    url = f"{stack.base_url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=auth("staff"), timeout=30) as r:
        assert r.status_code == 200
        # Keep one iterator alive: closing it early (e.g. `break`) would close the socket.
        lines = r.iter_lines()
        frames = [line for line in itertools.islice(lines, 6) if line.startswith("data:")]
        assert frames
        assert _running(stack) == 1
    # Leaving the block closed the connection mid-answer.
    # 1000 tokens take ~40 s here; a freed engine shows 0 within seconds.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _running(stack) != 0:
        time.sleep(0.2)
    assert _running(stack) == 0
