"""Hostile and careless chat bodies: each gets a 4xx problem that says what to fix, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.fakes import ScriptedLLM

URL = "/v1/chat/completions"
CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "Hi"}]}


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.mark.parametrize("depth", [100, 600, 1000, 2000])
def test_a_deeply_nested_body_is_a_400_at_every_depth(client: TestClient, depth: int) -> None:
    raw = '{"model":"test-model","messages":' + "[" * depth + "]" * depth + "}"
    response = client.post(URL, content=raw.encode(), headers={"content-type": "application/json"})
    assert problem(response, 400)["detail"].startswith("The request body is")


def test_nesting_too_deep_to_decode_says_so(client: TestClient) -> None:
    raw = '{"model":"test-model","messages":' + "[" * 2000 + "]" * 2000 + "}"
    response = client.post(URL, content=raw.encode(), headers={"content-type": "application/json"})
    assert "nested too deeply" in problem(response, 400)["detail"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_json_sent_as_another_media_type_is_415(
    client: TestClient, primary: ScriptedLLM, content_type: str
) -> None:
    response = client.post(
        URL, content=json.dumps(CHAT).encode(), headers={"content-type": content_type}
    )
    detail = problem(response, 415)["detail"]
    assert content_type in detail
    assert "Content-Type: application/json" in detail
    assert primary.requests == []


def test_json_media_type_with_charset_is_accepted(client: TestClient) -> None:
    response = client.post(
        URL,
        content=json.dumps(CHAT).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [{"type": "function", "function": {"name": "get_weather"}}]},
        {"tool_choice": "required"},
        {"functions": [{"name": "get_weather", "parameters": {}}]},
        {"function_call": {"name": "get_weather"}},
    ],
    ids=["tools", "tool_choice", "functions", "function_call"],
)
def test_tool_calling_is_refused_not_pretended(
    client: TestClient, primary: ScriptedLLM, extra: dict[str, Any]
) -> None:
    response = client.post(URL, json={**CHAT, **extra})
    detail = problem(response, 400)["detail"]
    assert "tool calling is not offered" in detail
    assert next(iter(extra)) in detail
    assert primary.requests == []


def test_asking_for_no_tools_is_fine(client: TestClient) -> None:
    response = client.post(URL, json={**CHAT, "tools": [], "tool_choice": "none"})
    assert response.status_code == 200, response.text


def test_an_empty_body_says_what_the_body_needs(client: TestClient) -> None:
    response = client.post(URL, content=b"", headers={"content-type": "application/json"})
    detail = problem(response, 400)["detail"]
    assert detail == (
        "The request body is empty; send a JSON object with model, messages "
        "(Content-Type: application/json)."
    )
