"""Authentication and roles through the running stack with the real `openai` client."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.stack import RunningStack

pytestmark = pytest.mark.e2e

Auth = Callable[[str], dict[str, str]]
QUESTION = [{"role": "user", "content": "What is 2 plus 2?"}]


def test_nothing_but_probes_answers_without_credentials(
    stack: RunningStack, model_name: str
) -> None:
    anonymous = OpenAI(base_url=f"{stack.base_url}/v1", api_key="not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        anonymous.chat.completions.create(model=model_name, messages=QUESTION)
    assert caught.value.response.headers["www-authenticate"].startswith("Bearer")
    for path in ("/v1/models", "/v1/info", "/v1/knowledge-bases", "/schema/openapi.json"):
        assert httpx.get(f"{stack.base_url}{path}").status_code == 401, path
    assert httpx.get(f"{stack.base_url}/healthz").status_code == 200


def test_roles_are_enforced(stack: RunningStack, model_name: str, api_keys: dict[str, str]) -> None:
    auditor = OpenAI(base_url=f"{stack.base_url}/v1", api_key=api_keys["auditor"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        auditor.chat.completions.create(model=model_name, messages=QUESTION)
    staff = {"Authorization": f"Bearer {api_keys['staff']}"}
    created = httpx.post(
        f"{stack.base_url}/v1/knowledge-bases", json={"name": "mine"}, headers=staff
    )
    assert created.status_code == 403
    minted = httpx.post(
        f"{stack.base_url}/v1/admin/api-keys",
        json={"name": "x", "tenant": "default", "roles": ["platform_admin"]},
        headers=staff,
    )
    assert minted.status_code == 403


def test_responses_carry_limits_and_the_key_was_printed_once(
    stack: RunningStack, client: OpenAI, model_name: str
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=model_name, messages=QUESTION, max_tokens=8
    )
    assert int(raw.headers["ratelimit-remaining"]) >= 0
    assert int(raw.headers["x-quota-remaining-tokens"]) > 0
    assert stack.log_text().count(stack.admin_key) == 1


@pytest.mark.parametrize(
    "offered",
    ["x" * 10_000, "a%0d%0aSet-Cookie:%20session=evil", "<script>alert(1)</script>"],
    ids=["10kB", "set-cookie", "script"],
)
def test_an_unsafe_request_id_is_replaced_and_header_and_body_agree(
    stack: RunningStack, auth: Auth, offered: str
) -> None:
    # Through Ray Serve's proxy, which echoed the client's value verbatim before the gate.
    response = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        json={"model": "no-such-model", "messages": QUESTION},
        headers={**auth("staff"), "X-Request-ID": offered},
        timeout=60,
    )
    assert response.status_code == 404
    echoed = response.headers.get_list("x-request-id")
    assert len(echoed) == 1
    assert echoed[0] != offered
    assert response.json()["request_id"] == echoed[0]


def test_hostile_bodies_are_client_errors_through_the_proxy(
    stack: RunningStack, auth: Auth, model_name: str
) -> None:
    url = f"{stack.base_url}/v1/chat/completions"
    nested = '{"model":"m","messages":' + "[" * 2000 + "]" * 2000 + "}"
    deep = httpx.post(
        url, content=nested, headers={**auth("staff"), "content-type": "application/json"}
    )
    assert deep.status_code == 400, deep.text
    assert deep.json()["request_id"] == deep.headers["x-request-id"]
    plain = httpx.post(
        url,
        content=f'{{"model":"{model_name}","messages":[{{"role":"user","content":"hi"}}]}}',
        headers={**auth("staff"), "content-type": "text/plain"},
    )
    assert plain.status_code == 415, plain.text
