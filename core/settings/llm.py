"""The language models: the primary and fallback engines and their decoding defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.settings.base import Section
from core.settings.deployment import DeploymentResources

__all__ = [
    "DecodingSettings",
    "LLMModelSettings",
    "LLMSettings",
]


class DecodingSettings(Section):
    """Penalties against repetition, as vLLM's ``SamplingParams`` and transformers'
    ``generate`` take them; the model's defaults (a runtime configuration may override them)."""

    repetition_penalty: float = Field(
        default=1.0,
        gt=0,
        le=2,
        description="Divides the logits of tokens already in the prompt or answer (1: off).",
    )
    frequency_penalty: float = Field(
        default=0.0,
        ge=-2,
        le=2,
        description="Subtracted per earlier occurrence of a token in the answer (0: off).",
    )
    presence_penalty: float = Field(
        default=0.0,
        ge=-2,
        le=2,
        description="Subtracted once from tokens already in the answer (0: off).",
    )


class LLMModelSettings(Section):
    """One served language model and the engine that runs it."""

    served_name: str = Field(
        default="smollm2-135m-instruct", description="Model id clients pass as `model`."
    )
    store_name: str = Field(
        default="smollm2-135m-instruct", description="Entry in the model store to load."
    )
    engine: Literal["vllm", "transformers"] = Field(
        default="vllm", description="Backend that runs the model."
    )
    max_model_len: int = Field(default=2048, ge=128, description="Context window in tokens.")
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = Field(
        default="float32",
        description="Weights/activations dtype. float32 on CPUs without AVX512-BF16: on the "
        "AVX2-only build machines bf16 is emulated (measured TTFT 3.0 s vs 0.5 s, 8 streams "
        "12 vs 44 tok/s); bfloat16 on GPUs and AVX512-BF16/AMX CPUs.",
    )
    enforce_eager: bool = Field(
        default=True,
        description="vLLM: skip graph compilation (on CPU compiled mode is slow to start "
        "and produced wrong output in bf16).",
    )
    kv_cache_space_gib: int = Field(
        default=1, ge=1, description="vLLM-CPU: KV cache size (VLLM_CPU_KVCACHE_SPACE)."
    )
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0, le=1, description="vLLM-CUDA: fraction of GPU memory to use."
    )
    max_num_seqs: int = Field(default=64, ge=1, description="Sequences batched at once.")
    torch_threads: int = Field(
        default=2, ge=1, description="transformers engine: intra-op threads for torch."
    )
    stream_interval_ms: float = Field(
        default=100.0,
        ge=0,
        le=1000,
        description="The replica sends the first delta of an answer at once and merges later "
        "ones that arrive within this many milliseconds into one (each delta is a Ray object "
        "and an SSE frame; per token they cost most of the stack's CPU at high concurrency). "
        "0: one delta per engine step.",
    )
    resources: DeploymentResources = Field(
        default_factory=DeploymentResources, description="Ray Serve resources."
    )
    decoding: DecodingSettings = Field(
        default_factory=DecodingSettings,
        description="Repetition penalties this model answers with (chosen by `enclave eval`).",
    )
    routing: Literal["power_of_two", "prefix_affinity"] = Field(
        default="power_of_two",
        description="How callers pick a replica: Serve's default (the less busy of two), or "
        "prefix affinity (Ray Serve LLM's PrefixCacheAffinityRouter: chats that share a prompt "
        "prefix go to the replica that has it in its KV cache while load is balanced). Only "
        "matters with more than one replica; off until measured on a GPU model.",
    )


def _default_fallback() -> LLMModelSettings:
    return LLMModelSettings(
        engine="transformers",
        dtype="float32",
        max_num_seqs=8,
        resources=DeploymentResources(num_cpus=0.5, max_ongoing_requests=8, max_queued_requests=32),
    )


class LLMSettings(Section):
    """The primary model and its fallback."""

    primary: LLMModelSettings = Field(
        default_factory=LLMModelSettings, description="The model that answers by default."
    )
    fallback: LLMModelSettings | None = Field(
        default_factory=_default_fallback,
        description="Engine that takes over when the primary fails, stalls or its breaker is "
        "open (before the first token, or mid-answer continuing the text so far); null: none.",
    )
    default_max_tokens: int = Field(
        default=512, ge=1, description="Answer budget when the client sets no max_tokens."
    )
    first_token_timeout_s: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="Seconds an engine may take to its first token (queueing included) "
        "before the answer moves to the fallback, or fails with 503 when none is left.",
    )
    stall_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds an engine may go silent between two tokens before the answer "
        "continues on the fallback from the text produced so far.",
    )
    circuit_failure_threshold: int = Field(
        default=5,
        ge=1,
        description="Consecutive primary failures that open its circuit breaker "
        "(requests then go straight to the fallback).",
    )
    circuit_failure_rate: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of failed primary calls within circuit_window_s that opens the "
        "breaker, once circuit_min_calls calls ended in the window.",
    )
    circuit_window_s: float = Field(
        default=30.0, gt=0, description="Window (seconds) over which the failure rate is measured."
    )
    circuit_min_calls: int = Field(
        default=10, ge=1, description="Calls in the window before the failure rate counts."
    )
    circuit_open_s: float = Field(
        default=15.0,
        gt=0,
        description="Seconds an open breaker skips the primary before letting one probe through.",
    )

    @model_validator(mode="after")
    def _fallback_fits_primary_prompts(self) -> LLMSettings:
        # Prompts are fitted to the primary's window; a smaller fallback window would fail
        # exactly the requests it is there to rescue.
        if self.fallback is not None and self.fallback.max_model_len < self.primary.max_model_len:
            msg = "llm.fallback.max_model_len must be >= llm.primary.max_model_len"
            raise ValueError(msg)
        return self
