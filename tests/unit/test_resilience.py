"""Degrade, don't fail: the circuit breaker, per-token deadlines, fallback mid-stream and
back-pressure mapped to 503 — over the scripted engines and fake Serve handles."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from api.chat import ChatPipeline, ChatRun, Notice
from api.chat.openai_types import ChatCompletionRequest
from api.chat.resilience import (
    CircuitBreaker,
    CircuitState,
    FirstTokenTimeout,
    StallTimeout,
    with_deadlines,
)
from api.chat.validation import validate_chat_request
from api.sse import iter_frames
from core.db import Database
from core.errors import GenerationFailed, ServiceUnavailable
from core.settings import Settings
from models.llm.base import GenerationDelta
from tests.fakes import ScriptedLLM, TestKeys, build_services, repo_plan

URL = "/v1/chat/completions"
DEADLINE_S = 0.2


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The unit settings with deadlines short enough to hit in a test."""
    llm = settings.llm.model_copy(
        update={"first_token_timeout_s": DEADLINE_S, "stall_timeout_s": DEADLINE_S}
    )
    return settings.model_copy(update={"llm": llm})


@pytest.fixture
def pipeline(
    settings: Settings,
    keys: TestKeys,
    database: Database,
    primary: ScriptedLLM,
    fallback: ScriptedLLM,
) -> ChatPipeline:
    return ChatPipeline(
        build_services(settings, keys, database, primary=primary, fallback=fallback)
    )


async def answer(
    pipeline: ChatPipeline, settings: Settings, notices: list[dict[str, object]] | None = None
) -> tuple[str, GenerationDelta, ChatRun]:
    """Run one chat through the pipeline as the service does; the text the user would see
    (and, into ``notices``, what the client is told mid-answer)."""
    body = msgspec.convert(
        {"model": "test-model", "messages": [{"role": "user", "content": "How do I log in?"}]},
        ChatCompletionRequest,
    )
    chat = validate_chat_request(body, settings.api)
    run = await pipeline.prepare(chat, "req_resilience", "default", repo_plan(settings))
    parts: list[str] = []
    last = GenerationDelta(text="")
    async for delta in pipeline.stream(chat, run):
        if isinstance(delta, Notice):
            if notices is not None:
                notices.append(delta.payload)
            continue
        parts.append(delta.text)
        last = delta
    return "".join(parts), last, run


# The breaker's state machine -------------------------------------------------------------


def breaker(clock: FakeClock, **options: Any) -> CircuitBreaker:
    defaults: dict[str, Any] = {
        "failure_threshold": 3,
        "failure_rate": 0.5,
        "window_s": 30.0,
        "min_calls": 10,
        "open_s": 15.0,
        "clock": clock,
    }
    return CircuitBreaker("llm_primary", **{**defaults, **options})


def test_breaker_opens_after_consecutive_failures_then_probes_once() -> None:
    clock = FakeClock()
    cb = breaker(clock)
    seen: list[tuple[str, int]] = []
    cb.subscribe(lambda name, state: seen.append((name, int(state))))
    for _ in range(2):
        assert cb.allow()
        cb.record_failure()
    assert cb.state is CircuitState.CLOSED
    assert cb.allow()
    cb.record_failure()
    assert cb.state is CircuitState.OPEN
    assert not cb.allow()
    assert cb.retry_after_s() == pytest.approx(15.0)
    clock.now += 14.9
    assert not cb.allow()
    clock.now += 0.1
    assert cb.state is CircuitState.HALF_OPEN
    assert cb.allow()  # the probe
    assert not cb.allow()  # only one at a time
    cb.record_success()
    assert cb.state is CircuitState.CLOSED
    assert cb.allow()
    assert seen == [("llm_primary", 2), ("llm_primary", 1), ("llm_primary", 0)]


def test_a_failed_probe_opens_the_breaker_for_another_cool_down() -> None:
    clock = FakeClock()
    cb = breaker(clock, failure_threshold=1)
    cb.record_failure()
    clock.now += 15
    assert cb.allow()
    cb.record_failure()
    assert cb.state is CircuitState.OPEN
    clock.now += 10
    assert not cb.allow()
    clock.now += 5
    assert cb.allow()


def test_a_success_resets_the_consecutive_count() -> None:
    cb = breaker(FakeClock(), failure_rate=1.0)  # only the consecutive rule applies
    for _ in range(5):
        cb.record_failure()
        cb.record_failure()
        cb.record_success()
    assert cb.state is CircuitState.CLOSED


def test_breaker_opens_on_failure_rate_within_the_window_only() -> None:
    clock = FakeClock()
    cb = breaker(clock, failure_threshold=100, min_calls=4)
    cb.record_failure()
    cb.record_failure()
    clock.now += 31  # those two have left the window
    cb.record_success()
    cb.record_failure()
    cb.record_success()
    assert cb.state is CircuitState.CLOSED  # 1 of 3: too few calls to judge
    cb.record_failure()
    assert cb.state is CircuitState.OPEN  # 2 of 4 failed


def test_released_probe_frees_the_slot_and_a_lost_probe_expires() -> None:
    clock = FakeClock()
    cb = breaker(clock, failure_threshold=1)
    cb.record_failure()
    clock.now += 15
    assert cb.allow()
    cb.release()  # e.g. the client went away: nothing learnt
    assert cb.state is CircuitState.HALF_OPEN
    assert cb.allow()
    assert not cb.allow()
    clock.now += 15  # that probe never reported: let another through
    assert cb.allow()


def test_breaker_rejects_nonsense_options() -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        breaker(FakeClock(), failure_rate=0)
    with pytest.raises(ValueError, match="failure_threshold"):
        breaker(FakeClock(), failure_threshold=0)


# Deadlines ---------------------------------------------------------------------------------


async def _numbers(gaps: list[float], closed: list[bool]) -> AsyncIterator[int]:
    try:
        for index, gap in enumerate(gaps):
            await asyncio.sleep(gap)
            yield index
    finally:
        closed.append(True)


async def test_deadline_on_the_first_item_cancels_the_source() -> None:
    closed: list[bool] = []
    with pytest.raises(FirstTokenTimeout):
        async for _ in with_deadlines(_numbers([5.0], closed), first_s=0.05, gap_s=1):
            pass
    assert closed == [True]


async def test_deadline_between_items_is_a_stall() -> None:
    closed: list[bool] = []
    got: list[int] = []

    async def consume() -> None:
        async for item in with_deadlines(_numbers([0, 0, 5.0], closed), first_s=1, gap_s=0.05):
            got.append(item)

    with pytest.raises(StallTimeout):
        await consume()
    assert got == [0, 1]
    assert closed == [True]


async def test_the_sources_own_timeout_is_not_taken_for_a_deadline() -> None:
    async def times_out() -> AsyncIterator[int]:
        raise TimeoutError("the engine's own")
        yield 0

    with pytest.raises(TimeoutError, match="the engine's own") as caught:
        async for _ in with_deadlines(times_out(), first_s=1, gap_s=1):
            pass
    assert not isinstance(caught.value, FirstTokenTimeout)


# Fallback in the pipeline ------------------------------------------------------------------


async def test_primary_dying_mid_stream_is_continued_by_the_fallback(
    pipeline: ChatPipeline, settings: Settings, primary: ScriptedLLM, fallback: ScriptedLLM
) -> None:
    primary.fail_after = 2
    notices: list[dict[str, object]] = []
    text, last, run = await answer(pipeline, settings, notices)
    assert text == "Hello from Fallback answer here"
    continued = fallback.requests[-1]
    assert continued.continue_from == "Hello from"
    assert continued.messages == primary.requests[-1].messages
    assert continued.prompt_token_ids is None  # the fallback templates the partial answer
    assert continued.sampling.max_tokens == primary.requests[-1].sampling.max_tokens - 2
    assert last.finish_reason == "stop"
    assert last.completion_tokens == 2 + 3
    assert last.prompt_tokens == len(primary.requests[-1].prompt_token_ids or ())
    assert run.engine == "scripted-fallback"
    assert notices == [{"event": "fallback", "reason": "RuntimeError", "when": "mid_stream"}]
    lineage = run.lineage()
    assert (lineage["fallback"], lineage["fallback_when"]) == ("RuntimeError", "mid_stream")


async def test_primary_stalling_mid_stream_is_cancelled_and_continued(
    pipeline: ChatPipeline, settings: Settings, primary: ScriptedLLM, fallback: ScriptedLLM
) -> None:
    primary.stall_after = 3
    started = asyncio.get_running_loop().time()
    text, _, run = await answer(pipeline, settings)
    assert asyncio.get_running_loop().time() - started < 5 * DEADLINE_S
    assert text == "Hello from the Fallback answer here"
    assert primary.cancelled == 1  # the stalled stream was cancelled, not left running
    assert (run.fallback_reason, run.fallback_when) == ("StallTimeout", "mid_stream")
    assert fallback.requests[-1].continue_from == "Hello from the"


async def test_primary_silent_before_its_first_token_moves_to_the_fallback(
    pipeline: ChatPipeline, settings: Settings, primary: ScriptedLLM, fallback: ScriptedLLM
) -> None:
    primary.stall_after = 0
    text, last, run = await answer(pipeline, settings)
    assert text == "Fallback answer here"
    assert primary.cancelled == 1
    assert fallback.requests[-1].continue_from == ""
    assert fallback.requests[-1].prompt_token_ids == primary.requests[-1].prompt_token_ids
    assert last.completion_tokens == 3
    assert (run.fallback_reason, run.fallback_when) == ("FirstTokenTimeout", "before_first_token")
    assert run.lineage()["fallback_when"] == "before_first_token"


async def test_open_breaker_skips_the_primary(
    pipeline: ChatPipeline, settings: Settings, primary: ScriptedLLM
) -> None:
    for _ in range(settings.llm.circuit_failure_threshold):
        primary.fail_before_first = True
        await answer(pipeline, settings)
    assert pipeline.breaker.state is CircuitState.OPEN
    calls = len(primary.requests)
    primary.fail_before_first = False
    text, _, run = await answer(pipeline, settings)
    assert len(primary.requests) == calls
    assert text == "Fallback answer here"
    assert run.fallback_reason == "circuit_open"


async def test_open_breaker_without_fallback_fails_fast_with_retry_after(
    settings: Settings, keys: TestKeys, database: Database, primary: ScriptedLLM
) -> None:
    services = build_services(settings, keys, database, primary=primary, fallback=None)
    pipeline = ChatPipeline(services)
    primary.fail_before_first = True
    for _ in range(settings.llm.circuit_failure_threshold):
        with pytest.raises(GenerationFailed):
            await answer(pipeline, settings)
    calls = len(primary.requests)
    with pytest.raises(GenerationFailed) as caught:
        await answer(pipeline, settings)
    assert len(primary.requests) == calls
    assert 1 <= caught.value.retry_after <= settings.llm.circuit_open_s


async def test_both_dying_mid_stream_keeps_the_interrupted_error(
    pipeline: ChatPipeline, settings: Settings, primary: ScriptedLLM, fallback: ScriptedLLM
) -> None:
    primary.fail_after = 2
    fallback.fail_before_first = True
    with pytest.raises(RuntimeError, match="engine down"):
        await answer(pipeline, settings)


async def test_both_overloaded_is_503_at_capacity_and_spares_the_breaker(
    pipeline: ChatPipeline, settings: Settings, primary: ScriptedLLM, fallback: ScriptedLLM
) -> None:
    primary.overloaded = fallback.overloaded = True
    for _ in range(settings.llm.circuit_failure_threshold + 1):
        with pytest.raises(ServiceUnavailable, match="at capacity") as caught:
            await answer(pipeline, settings)
        assert not isinstance(caught.value, GenerationFailed)
        assert caught.value.http_headers() == {"Retry-After": "2"}
    assert len(fallback.requests) == settings.llm.circuit_failure_threshold + 1  # once each
    assert pipeline.breaker.state is CircuitState.CLOSED  # overload is not a broken primary


def test_mid_stream_fallback_over_http_streams_one_answer_with_lineage(
    client: TestClient, primary: ScriptedLLM
) -> None:
    primary.fail_after = 2
    response = client.post(
        URL,
        json={
            "model": "test-model",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
        },
    )
    frames = iter_frames(response.content)
    assert frames[-1] == b"[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert all("error" not in c for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello from Fallback answer here"
    assert chunks[-1]["enclave"]["fallback"] == "RuntimeError"
    assert chunks[-1]["enclave"]["fallback_when"] == "mid_stream"


def test_mid_stream_fallback_over_http_json(client: TestClient, primary: ScriptedLLM) -> None:
    primary.fail_after = 3
    data = client.post(
        URL, json={"model": "test-model", "messages": [{"role": "user", "content": "Hi"}]}
    ).json()
    assert data["choices"][0]["message"]["content"] == "Hello from the Fallback answer here"
    assert data["usage"]["completion_tokens"] == 3 + 3
    assert data["enclave"]["fallback_when"] == "mid_stream"


# Back-pressure at the Serve handles --------------------------------------------------------


def _back_pressure() -> Exception:
    from ray.serve.exceptions import BackPressureError

    return BackPressureError(num_queued_requests=8, max_queued_requests=8)


class _Method:
    def __init__(self, error: Exception) -> None:
        self._error = error

    async def remote(self, *args: Any, **kwargs: Any) -> Any:
        raise self._error


class _RefusingHandle:
    """A deployment handle whose queue is full: every call raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.cancelled = 0

    def options(self, **_: Any) -> _RefusingHandle:
        return self

    def __getattr__(self, name: str) -> Any:
        if name == "generate":
            return _StreamMethod(self)
        return _Method(self.error)


class _StreamMethod:
    def __init__(self, handle: _RefusingHandle) -> None:
        self._handle = handle

    def remote(self, request: Any, **_options: Any) -> _RefusedStream:
        return _RefusedStream(self._handle)


class _RefusedStream:
    def __init__(self, handle: _RefusingHandle) -> None:
        self._handle = handle

    def __aiter__(self) -> _RefusedStream:
        return self

    async def __anext__(self) -> Any:
        raise self._handle.error

    def cancel(self) -> None:
        self._handle.cancelled += 1


async def test_full_llm_queue_is_service_unavailable(settings: Settings) -> None:
    from models.llm.base import EngineInfo, GenerationRequest, SamplingOptions
    from serving.clients import HandleLLMClient

    handle = _RefusingHandle(_back_pressure())
    client = HandleLLMClient(handle, EngineInfo("vllm", "m", 256), name="primary")
    request = GenerationRequest("r", (), SamplingOptions(max_tokens=4))
    with pytest.raises(ServiceUnavailable, match="at capacity") as caught:
        async for _ in client.generate(request):
            pass
    assert caught.value.status_code == 503
    assert caught.value.http_headers()["Retry-After"] == "2"
    assert caught.value.extra == {"deployment": "primary"}


async def test_full_guard_queues_are_service_unavailable() -> None:
    from serving.clients import HandleGuardClient

    client = HandleGuardClient(_RefusingHandle(_back_pressure()), _RefusingHandle(_back_pressure()))
    with pytest.raises(ServiceUnavailable, match="pii"):
        await client.scan(["text"])
    with pytest.raises(ServiceUnavailable, match="guard"):
        await client.check("text")


async def test_full_retriever_queue_is_service_unavailable_also_when_wrapped() -> None:
    from ray.exceptions import RayTaskError
    from ray.serve.exceptions import BackPressureError

    from serving.clients import HandleKnowledgeService

    hinted = BackPressureError(num_queued_requests=4, max_queued_requests=4, retry_after_s=3.2)
    wrapped = RayTaskError("retrieve", "Traceback ...", hinted)
    for error, retry_after in ((_back_pressure(), "2"), (wrapped, "4")):
        service = HandleKnowledgeService(_RefusingHandle(error))
        with pytest.raises(ServiceUnavailable) as caught:
            await service.retrieve("default", "handbook", "q", k=3, min_score=0.1)
        assert caught.value.http_headers() == {"Retry-After": retry_after}


async def test_other_handle_errors_pass_through_unchanged() -> None:
    from serving.clients import HandleGuardClient

    client = HandleGuardClient(_RefusingHandle(RuntimeError("replica died")), None)
    with pytest.raises(RuntimeError, match="replica died"):
        await client.scan(["text"])


async def _consume_until(
    pipeline: ChatPipeline, settings: Settings, wanted: int
) -> list[GenerationDelta]:
    """Stream an answer in a task; cancel it (as a client disconnect does) after ``wanted``
    deltas arrived."""
    body = msgspec.convert(
        {"model": "test-model", "messages": [{"role": "user", "content": "How do I log in?"}]},
        ChatCompletionRequest,
    )
    chat = validate_chat_request(body, settings.api)
    run = await pipeline.prepare(chat, "req_leave", "default", repo_plan(settings))
    received: list[GenerationDelta] = []
    enough = asyncio.Event()

    async def consume() -> None:
        async for delta in pipeline.stream(chat, run):
            received.append(delta)
            if len(received) >= wanted:
                enough.set()

    task = asyncio.ensure_future(consume())
    await enough.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return received


async def test_cancelled_request_cancels_the_engine_and_spares_the_breaker(
    pipeline: ChatPipeline, settings: Settings, primary: ScriptedLLM, fallback: ScriptedLLM
) -> None:
    primary.delay_s = fallback.delay_s = 0.02
    received = await _consume_until(pipeline, settings, 1)
    assert primary.cancelled == 1
    assert len(received) < 5
    primary.fail_after = 1
    received = await _consume_until(pipeline, settings, 2)  # one word each
    assert fallback.cancelled == 1
    assert len(received) < 4
    assert pipeline.breaker.state is CircuitState.CLOSED


async def test_a_successful_probe_closes_the_breaker_when_read_as_the_service_reads(
    pipeline: ChatPipeline, settings: Settings, primary: ScriptedLLM
) -> None:
    # The chat service stops reading at the delta that carries the finish reason and closes
    # the stream; a probe that answered in full must still close the breaker, or every
    # answer goes on to the (smaller) fallback long after the primary is back.
    for _ in range(settings.llm.circuit_failure_threshold):
        primary.fail_before_first = True
        await answer(pipeline, settings)
    assert pipeline.breaker.state is CircuitState.OPEN
    primary.fail_before_first = False
    pipeline.breaker._opened_at -= settings.llm.circuit_open_s  # the cool-down has passed
    body = msgspec.convert(
        {"model": "test-model", "messages": [{"role": "user", "content": "How do I log in?"}]},
        ChatCompletionRequest,
    )
    chat = validate_chat_request(body, settings.api)
    run = await pipeline.prepare(chat, "req_probe", "default", repo_plan(settings))
    stream = pipeline.stream(chat, run)
    async with aclosing(stream):
        async for delta in stream:
            if isinstance(delta, GenerationDelta) and delta.finish_reason is not None:
                break
    assert not run.fallback_used
    assert pipeline.breaker.state is CircuitState.CLOSED
