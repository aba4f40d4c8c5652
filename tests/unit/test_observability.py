"""What a chat leaves in /metrics and in the response: counters, stage latencies, TTFT,
rejections, the trace id — and no user text or ids in any label."""

from __future__ import annotations

import re

from litestar.testing import TestClient

from tests.fakes import TestKeys

CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "vpn for Ana Silva?"}]}


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = re.match(r"[^{ ]+(?:\{(.*)\})? (\S+)", line)
        assert found is not None
        got = ",".join(sorted((found.group(1) or "").split(","))) if found.group(1) else ""
        if got == wanted:
            return float(found.group(2))
    return 0.0


def test_a_chat_is_counted_timed_and_traced(client: TestClient, keys: TestKeys) -> None:
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    trace_id = response.headers["x-trace-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert response.json()["enclave"]["trace_id"] == trace_id
    client.get("/v1/me", headers={"Authorization": "Bearer enc_0000000000000000.nope"})
    metrics = client.get("/metrics", headers={"Authorization": ""}).text
    assert sample(metrics, "enclave_chat_requests_total", decision="answer", outcome="ok") == 1
    assert sample(metrics, "enclave_retrieval_total", result="ok") == 1
    assert sample(metrics, "enclave_pii_detections_total", entity_type="PERSON") == 1
    # The fake engine is not a known engine name: bounded labels map it to "other".
    assert sample(metrics, "enclave_ttft_seconds_count", engine="other") == 1
    assert sample(metrics, "enclave_rejections_total", reason="unauthenticated") == 1
    for stage in ("auth", "guards", "retrieval", "prompt", "persistence"):
        assert sample(metrics, "enclave_stage_duration_seconds_count", stage=stage) >= 1, stage
    chat_ok = sample(
        metrics,
        "enclave_http_requests_total",
        route="/v1/chat/completions",
        method="POST",
        status="2xx",
    )
    assert chat_ok == 1
    assert "Ana" not in metrics
    assert "Silva" not in metrics
    assert "enc_" not in metrics
