"""One chat is one trace: spans from the API and every replica it touched, one trace id,
exported over OTLP to a receiver on loopback."""

from __future__ import annotations

import time
import uuid

import pytest
from openai import OpenAI

from tests.e2e.stack import RunningStack

pytestmark = pytest.mark.e2e


def test_one_chat_is_one_trace_across_the_replicas(
    client: OpenAI, model_name: str, stack: RunningStack
) -> None:
    # A question not asked before: the API caches PII scans of texts it has seen.
    question = f"Which VPN profile should I use on hotel wifi, ticket {uuid.uuid4().hex[:6]}?"
    raw = client.chat.completions.with_raw_response.create(
        model=model_name, messages=[{"role": "user", "content": question}], max_tokens=8
    )
    trace_id = raw.headers["x-trace-id"]
    completion = raw.parse()
    assert (completion.model_extra or {})["enclave"]["trace_id"] == trace_id
    wanted = {"api", "pii", "guard", "retriever", "llm_primary"}
    deadline = time.monotonic() + 30  # span processors export in batches every few seconds
    components: set[str] = set()
    while time.monotonic() < deadline:
        spans = stack.traces.spans(trace_id)
        components = {component for component, _ in spans}
        if wanted <= components:
            break
        time.sleep(1)
    assert wanted <= components, stack.traces.spans(trace_id)
    names = {name for _, name in stack.traces.spans(trace_id)}
    assert {"guards", "retrieval", "prompt", "llm.generate", "persistence"} <= names
