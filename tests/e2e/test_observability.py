"""What the platform team scrapes: the stack's /metrics after real traffic, with the
embedded canary's results in it."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from openai import OpenAI

from tests.e2e.stack import RunningStack

pytestmark = pytest.mark.e2e


def value(metrics: str, pattern: str) -> float:
    found = re.search(pattern + r" (\S+)", metrics)
    return float(found.group(1)) if found else 0.0


def test_metrics_show_traffic_and_the_embedded_canary(
    stack: RunningStack, client: OpenAI, model_name: str
) -> None:
    client.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": "Hello there!"}], max_tokens=8
    )
    deadline = time.monotonic() + 180  # the canary starts once the stack is ready
    metrics = ""
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{stack.base_url}/metrics", timeout=10).text
        if value(metrics, r'enclave_canary_runs_total\{result="ok"\}') >= 1:
            break
        time.sleep(3)
    assert value(metrics, r'enclave_canary_runs_total\{result="ok"\}') >= 1, metrics[-2000:]
    assert value(metrics, r"enclave_canary_success") == 1
    assert value(metrics, r'enclave_chat_requests_total\{decision="[a-z_]+",outcome="ok"\}') >= 1
    assert value(metrics, r'enclave_ttft_seconds_count\{engine="vllm"\}') >= 1
    assert value(metrics, r'enclave_engine_generated_tokens_total\{deployment="llm_primary"\}') > 0


def test_ray_serve_metrics_are_exported_on_loopback(
    stack: RunningStack, client: OpenAI, model_name: str
) -> None:
    """Ray's own metrics (``ray.metrics_export_port``): Serve's request counts and replica
    health, on 127.0.0.1 only (docs/operations.md)."""
    port = stack.ray_metrics_port  # the stack's ray.metrics_export_port (tests/e2e/stack.py)
    client.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": "Hello!"}], max_tokens=4
    )
    wanted = ("ray_serve_num_http_requests_total", "ray_serve_deployment_replica_healthy")
    deadline = time.monotonic() + 90  # Ray's agent exports every few seconds
    metrics = ""
    while time.monotonic() < deadline:
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        if all(re.search(rf"^{name}\{{", metrics, re.MULTILINE) for name in wanted):
            break
        time.sleep(3)
    for name in wanted:
        assert re.search(rf"^{name}\{{", metrics, re.MULTILINE), (name, metrics[-2000:])
    assert re.search(r'^ray_serve_deployment_replica_healthy\{[^}]*deployment="api"', metrics, re.M)
