"""Language-model engines: one Protocol, a vLLM backend and a transformers fallback."""

from __future__ import annotations

from pathlib import Path

from core.settings import LLMModelSettings
from models.llm.base import (
    ChatMessage,
    EngineInfo,
    FinishReason,
    GenerationDelta,
    GenerationRequest,
    LLMEngine,
    SamplingOptions,
)
from models.llm.coalescing import coalesce

__all__ = [
    "ChatMessage",
    "EngineInfo",
    "FinishReason",
    "GenerationDelta",
    "GenerationRequest",
    "LLMEngine",
    "SamplingOptions",
    "build_engine",
    "coalesce",
]


def build_engine(settings: LLMModelSettings, model_dir: Path, cache_dir: Path) -> LLMEngine:
    """The engine ``settings.engine`` names, for the model folder given (not yet started)."""
    if settings.engine == "vllm":
        from models.llm.vllm_engine import VLLMEngine

        return VLLMEngine(
            model_dir,
            served_name=settings.served_name,
            max_model_len=settings.max_model_len,
            dtype=settings.dtype,
            enforce_eager=settings.enforce_eager,
            max_num_seqs=settings.max_num_seqs,
            kv_cache_space_gib=settings.kv_cache_space_gib,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            cache_dir=cache_dir,
        )
    from models.llm.hf_engine import TransformersEngine

    return TransformersEngine(
        model_dir,
        served_name=settings.served_name,
        max_model_len=settings.max_model_len,
        dtype=settings.dtype,
        max_concurrent=settings.max_num_seqs,
        torch_threads=settings.torch_threads,
    )
