"""The transformers fallback engine on the real SmolLM2 weights."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from models.llm.hf_engine import TransformersEngine
from tests.integration import engine_checks

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def engine(llm_dir: Path) -> AsyncIterator[TransformersEngine]:
    hf = TransformersEngine(llm_dir, served_name="smollm2-135m-instruct", max_model_len=2048)
    await hf.start()
    yield hf
    await hf.shutdown()


async def test_streams_and_completes_a_chat(engine: TransformersEngine) -> None:
    await engine_checks.streams_a_chat(engine)


async def test_respects_max_tokens(engine: TransformersEngine) -> None:
    await engine_checks.respects_max_tokens(engine)


async def test_honours_stop_strings(engine: TransformersEngine) -> None:
    await engine_checks.honours_stop_strings(engine)


async def test_cancelling_a_stream_frees_the_engine(engine: TransformersEngine) -> None:
    await engine_checks.cancelling_frees_the_engine(engine, engine.running_requests)
