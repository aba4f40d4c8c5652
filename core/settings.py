"""One typed settings tree, loaded once at start-up and passed in.

Precedence, lowest first: field defaults → ``settings.yaml`` → ``settings-<profile>.yaml``
→ ``ENCLAVE_*`` environment variables (nested with ``__``, e.g.
``ENCLAVE_API__PORT=9000``). The YAML files are deep-merged. Invalid settings raise
:class:`core.errors.ConfigurationError` listing every problem at once.

The *config version* is the sha256 of the canonical JSON of the effective settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.errors import ConfigurationError
from core.settings_base import Section
from core.settings_scaling import AutoscalingSettings, PlacementSettings
from core.settings_security import (
    ApiKeySettings,
    AuthSettings,
    LimitsSettings,
    OIDCSettings,
    TokenQuotaSettings,
)

__all__ = [
    "AlertSettings",
    "ApiKeySettings",
    "ApiSettings",
    "AuditSettings",
    "AuthSettings",
    "AutoscalingSettings",
    "CanarySettings",
    "ContextSettings",
    "DatabaseSettings",
    "DeploymentResources",
    "GuardSettings",
    "HistorySettings",
    "LLMModelSettings",
    "LLMSettings",
    "LimitsSettings",
    "OIDCSettings",
    "PIIPattern",
    "PIISettings",
    "PathsSettings",
    "PiiPolicy",
    "PlacementSettings",
    "RaySettings",
    "RetentionSettings",
    "RetrievalSettings",
    "SeedKnowledgeBase",
    "Settings",
    "TelemetrySettings",
    "TokenQuotaSettings",
    "config_version",
    "load_settings",
]

ENV_PREFIX = "ENCLAVE_"


_Section = Section


class PathsSettings(_Section):
    """Where Enclave keeps its state."""

    data_dir: Path = Field(
        default=Path(".enclave"),
        description="Data directory: model store, Ray temp files and auth token, caches. "
        "Relative paths are resolved against the config directory at start-up.",
    )
    model_store_dir: Path | None = Field(
        default=None,
        description="Model store folder (prepared weights and manifest); null: <data_dir>/models. "
        "Read-only at run time, so several profiles may share one.",
    )

    @property
    def model_store(self) -> Path:
        """The model store folder (prepared weights and their manifest)."""
        return (
            self.model_store_dir if self.model_store_dir is not None else self.data_dir / "models"
        )

    @property
    def ray_dir(self) -> Path:
        """Ray's session/temp folder."""
        return self.data_dir / "ray"

    @property
    def cache_dir(self) -> Path:
        """Caches of libraries that would otherwise write to the home directory."""
        return self.data_dir / "cache"


class ApiSettings(_Section):
    """The HTTP API (Litestar, served through the Ray Serve proxy)."""

    host: str = Field(default="127.0.0.1", description="Address the HTTP proxy binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the HTTP proxy binds to.")
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="Largest accepted request body, in bytes."
    )
    max_messages: int = Field(
        default=256, ge=1, description="Most messages accepted in one chat request."
    )
    max_message_chars: int = Field(
        default=32_000, ge=1, description="Longest accepted single message, in characters."
    )
    max_completion_tokens: int = Field(
        default=1024, ge=1, description="Upper bound a client may ask for in max_tokens."
    )
    readiness_timeout_s: float = Field(
        default=2.0, gt=0, description="How long /readyz waits for each deployment to answer."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API from other pages (CORS); empty: "
        "none (the portal is served by the API itself, so it needs none).",
    )
    num_replicas: int = Field(default=1, ge=1, description="Replicas of the API ingress.")
    num_cpus: float = Field(default=0.5, ge=0, description="Ray CPUs reserved per API replica.")
    max_ongoing_requests: int = Field(
        default=256, ge=1, description="Concurrent requests one API replica accepts."
    )
    autoscaling: AutoscalingSettings = Field(
        default_factory=AutoscalingSettings,
        description="Serve autoscaling of the API replicas (replaces num_replicas when enabled).",
    )
    placement: PlacementSettings = Field(
        default_factory=PlacementSettings, description="Where API replicas may run."
    )

    @model_validator(mode="after")
    def _replicas_fixed_or_scaled(self) -> ApiSettings:
        _check_fixed_or_scaled(self.autoscaling, "num_replicas" in self.model_fields_set)
        return self


def _check_fixed_or_scaled(autoscaling: AutoscalingSettings, fixed_set: bool) -> None:
    # Serve rejects a deployment that has both; say so at start-up, naming the fix.
    if autoscaling.enabled and fixed_set:
        msg = "set num_replicas or enable autoscaling, not both (autoscaling sets the count)"
        raise ValueError(msg)


class DeploymentResources(_Section):
    """Resources and queueing of one Ray Serve deployment."""

    num_replicas: int = Field(default=1, ge=1, description="Replicas of this deployment.")
    num_cpus: float = Field(default=1.0, ge=0, description="Ray CPUs reserved per replica.")
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs reserved per replica.")
    max_ongoing_requests: int = Field(
        default=64, ge=1, description="Requests one replica works on at once."
    )
    max_queued_requests: int = Field(
        default=128,
        ge=-1,
        description="Requests queued per caller before Serve rejects (-1: unbounded).",
    )
    autoscaling: AutoscalingSettings = Field(
        default_factory=AutoscalingSettings,
        description="Serve autoscaling (replaces num_replicas when enabled).",
    )
    placement: PlacementSettings = Field(
        default_factory=PlacementSettings, description="Where the replicas may run."
    )

    @model_validator(mode="after")
    def _replicas_fixed_or_scaled(self) -> DeploymentResources:
        _check_fixed_or_scaled(self.autoscaling, "num_replicas" in self.model_fields_set)
        return self


class DecodingSettings(_Section):
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


class LLMModelSettings(_Section):
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


class LLMSettings(_Section):
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


class PIIPattern(_Section):
    """An organisation-specific identifier recognised by a regular expression."""

    entity: str = Field(description="Entity type reported, e.g. EMPLOYEE_ID.")
    regex: str = Field(description="Python regular expression matching the identifier.")
    score: float = Field(default=0.9, ge=0, le=1, description="Confidence of a match.")
    context: list[str] = Field(
        default_factory=list, description="Words nearby that raise the confidence."
    )


def _default_pii_patterns() -> list[PIIPattern]:
    return [PIIPattern(entity="EMPLOYEE_ID", regex=r"\bEMP-\d{6}\b", context=["employee"])]


class PIISettings(_Section):
    """Presidio PII detection: which entities, how sure, and the organisation's own patterns."""

    spacy_store_name: str = Field(
        default="en-core-web-sm", description="spaCy pipeline in the model store."
    )
    ner_engine: Literal["spacy", "transformers"] = Field(
        default="spacy",
        description="NER behind PERSON/LOCATION: spaCy, or a transformers token-classification "
        "model (spaCy then only tokenises).",
    )
    transformers_ner_dir: Path | None = Field(
        default=None,
        description="Local folder of the transformers NER model (e.g. a BERT NER fine-tune); "
        "required when ner_engine is transformers.",
    )
    entities: list[str] = Field(
        default_factory=lambda: [
            "PERSON",
            "EMAIL_ADDRESS",
            "PHONE_NUMBER",
            "CREDIT_CARD",
            "US_SSN",
            "IBAN_CODE",
            "IP_ADDRESS",
            "LOCATION",
        ],
        description="Built-in entity types detected (custom patterns are added to these).",
    )
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {
            "PERSON": 0.5,
            "LOCATION": 0.5,
            "PHONE_NUMBER": 0.4,
            "US_SSN": 0.3,
            "IP_ADDRESS": 0.5,
        },
        description="Minimum score per entity type; others use default_threshold.",
    )
    default_threshold: float = Field(
        default=0.5, ge=0, le=1, description="Minimum score for types not in thresholds."
    )
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "PT", "NL"],
        description="Regions whose national phone formats are recognised (international "
        "+CC numbers always are). More regions, more false alarms: ES and IT read SSNs, IPs "
        "and 9-digit invoice numbers as phones.",
    )
    patterns: list[PIIPattern] = Field(
        default_factory=_default_pii_patterns, description="Organisation-specific identifiers."
    )
    allow_list: list[str] = Field(
        default_factory=list, description="Values never treated as PII (e.g. public names)."
    )
    mask_names_in_replies: bool = Field(
        default=True,
        description="Also mask people's names the model writes (known first name + capitalised "
        "word) that are not the user's own: the user's names reach the model as placeholders.",
    )
    resources: DeploymentResources = Field(
        default_factory=lambda: DeploymentResources(num_cpus=0.5, max_ongoing_requests=32),
        description="Ray Serve resources of the PII/NER deployment.",
    )

    @model_validator(mode="after")
    def _transformers_needs_a_model(self) -> PIISettings:
        if self.ner_engine == "transformers" and self.transformers_ner_dir is None:
            msg = "pii.transformers_ner_dir is required when pii.ner_engine is transformers"
            raise ValueError(msg)
        return self


IntentAction = Literal["answer", "answer_without_documents", "refuse", "escalate"]


def _default_intent_actions() -> dict[str, IntentAction]:
    return {
        "small_talk": "answer_without_documents",
        "out_of_scope": "refuse",
        "escalate_to_human": "escalate",
    }


class GuardSettings(_Section):
    """Intent routing, prompt-injection blocking and system-prompt protection."""

    intent_actions: dict[str, IntentAction] = Field(
        default_factory=_default_intent_actions,
        description="What each intent leads to; intents not listed are answered.",
    )
    min_intent_confidence: float = Field(
        default=0.45,
        ge=0,
        le=1,
        description="Below this confidence the intent's action is not applied (answered).",
    )
    injection_threshold: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="Injection-head probability that blocks (rules block regardless). Held-out "
        "operating points are in models/README.md; 0.6 trades a little recall for fewer "
        "blocked colleagues.",
    )
    encoder_threads: int = Field(
        default=1,
        ge=1,
        description="Torch threads of the guard's MiniLM encoder. Alone, 2 threads are faster "
        "(one 300-character message: 43 ms p50 vs 29 ms), but beside vLLM on 2 cores the "
        "whole stack got slower (benchmarks/README.md), so 1.",
    )
    leak_min_chars: int = Field(
        default=60,
        ge=20,
        description="A reply quoting this many characters of the system prompt is cut.",
    )
    cut_repetition: bool = Field(
        default=True,
        description="End a reply that starts looping at its last complete sentence and stop "
        "its generation (api/repetition.py). Off only to measure the engine at forced answer "
        "lengths: the serving benchmark asks `ignore_eos`, which makes a small model loop.",
    )
    resources: DeploymentResources = Field(
        default_factory=lambda: DeploymentResources(num_cpus=0.5, max_ongoing_requests=32),
        description="Ray Serve resources of the intent/injection deployment.",
    )


class PromptSettings(_Section):
    """Versioned prompts: the repo's templates (the global layer) and their suites."""

    directory: Path = Field(
        default=Path("prompts"),
        description="Folder of the global prompts (<name>/prompt.yaml and its templates) and "
        "their regression suites (suites/*.yaml), relative to the config dir.",
    )
    chat_prompt: str = Field(default="chat", description="The prompt chat answers run under.")
    refresh_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How soon an activation (prompt or runtime configuration) made through one "
        "API replica reaches the others: each re-reads the newest activation at most this often.",
    )


class ContextSettings(_Section):
    """How a conversation is fitted to the model's context window."""

    reserve_retrieval_tokens: int = Field(
        default=0, ge=0, description="Tokens kept free for retrieved documents."
    )
    min_answer_tokens: int = Field(
        default=16, ge=1, description="Smallest answer budget left after fitting the prompt."
    )


class DatabaseSettings(_Section):
    """The SQL store (SQLAlchemy async): SQLite file by default, PostgreSQL in production."""

    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy async URL, e.g. postgresql+asyncpg://user:pw@db/enclave; "
        "null: SQLite at <data_dir>/enclave.db. A secret: prefer url_file or the "
        "ENCLAVE_DATABASE__URL variable.",
    )
    url_file: Path | None = Field(
        default=None, description="File holding the URL (a mounted secret); wins over url."
    )
    pool_size: int = Field(default=5, ge=1, description="Connections kept open (PostgreSQL).")
    connect_timeout_s: float = Field(
        default=5.0, gt=0, description="How long to wait for a connection before failing."
    )
    migrate_on_start: bool = Field(
        default=True,
        description="`enclave serve` upgrades the schema before starting (embedded mode); in "
        "a cluster a migration Job runs `enclave db upgrade` before new code rolls out.",
    )


class AuditSettings(_Section):
    """The tamper-evident audit log: its Ed25519 signing key and how it is read back."""

    signing_key_file: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM PKCS#8 or 32 raw bytes; a mounted secret in a "
        "cluster); null: <data_dir>/secrets/audit-signing-key.",
    )
    generate_signing_key: bool = Field(
        default=True,
        description="Create the key file (mode 600) on first use when it does not exist "
        "(embedded mode); false in a cluster, so that a missing secret stops start-up instead "
        "of each replica signing with a key of its own.",
    )
    trusted_public_keys: list[str] = Field(
        default_factory=list,
        description="Base64 raw Ed25519 public keys of earlier signing keys: records they "
        "signed still verify after a key rotation.",
    )
    lock_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="PostgreSQL: longest wait for the chain head lock before an append fails "
        "with 503 (SQLite waits for its busy timeout).",
    )
    verify_batch_size: int = Field(
        default=1000, ge=1, description="Records read per query while verifying the chain."
    )
    export_batch_size: int = Field(
        default=1000, ge=1, description="Records read per query while exporting."
    )
    checkpoint_interval_s: float | None = Field(
        default=300.0,
        gt=0,
        description="How often each API process signs the chain's head (seq, hash, time) "
        "and writes it to the checkpoint sinks (the log stream and checkpoint_file); one more "
        "on shutdown. Records deleted from the end after a checkpoint are reported by "
        "`verify` given that checkpoint. null: no checkpoints.",
    )
    checkpoint_file: Path | None = Field(
        default=None,
        description="File each checkpoint is appended to (one JSON line, fsynced), for the "
        "operator to ship to WORM storage; null: <data_dir>/audit/checkpoints.jsonl.",
    )

    def checkpoint_path(self, data_dir: Path) -> Path:
        """The checkpoint file: the configured one, else the default in the data dir."""
        if self.checkpoint_file is not None:
            return self.checkpoint_file
        return data_dir / "audit" / "checkpoints.jsonl"

    def signing_key_path(self, data_dir: Path) -> Path:
        """The signing key file: the configured one, else the default in the data dir."""
        if self.signing_key_file is not None:
            return self.signing_key_file
        return data_dir / "secrets" / "audit-signing-key"


PiiPolicy = Literal["keep", "redact", "reject"]


class KnowledgeBaseSettings(_Section):
    """Settings of one named knowledge base."""

    pii_policy: PiiPolicy = Field(
        default="redact",
        description="What ingestion does with PII found in a document: keep it, replace each "
        "value by its type, or reject the document.",
    )


class SeedKnowledgeBase(_Section):
    """A folder of documents ingested into a knowledge base when that base does not exist."""

    name: str = Field(description="Knowledge-base name.")
    tenant: str = Field(default="default", description="Tenant that owns it.")
    path: Path = Field(description="Folder of documents (relative to the config dir).")
    description: str = Field(default="", description="Shown in the admin API.")


class RetrievalSettings(_Section):
    """Tenant knowledge bases (FAISS + MiniLM) and grounded answers."""

    enabled: bool = Field(default=True, description="Retrieve documents for chat answers.")
    encoder_store_name: str = Field(
        default="all-minilm-l6-v2", description="Sentence encoder in the model store."
    )
    top_k: int = Field(default=4, ge=1, le=20, description="Chunks put into the prompt, at most.")
    min_score: float = Field(
        default=0.3, ge=-1, le=1, description="Cosine similarity a chunk needs to be used."
    )
    timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest wait for retrieval; past it the answer goes on without documents "
        "and says `retrieval: degraded`.",
    )
    max_context_tokens: int = Field(
        default=768, ge=64, description="Prompt tokens the retrieved chunks may take, at most."
    )
    default_knowledge_base: str = Field(
        default="handbook",
        description="Knowledge base searched when a chat request names none.",
    )
    default_pii_policy: PiiPolicy = Field(
        default="redact", description="PII policy of knowledge bases not listed below."
    )
    knowledge_bases: dict[str, KnowledgeBaseSettings] = Field(
        default_factory=dict, description="Per knowledge-base name: its PII policy."
    )
    seed: list[SeedKnowledgeBase] = Field(
        default_factory=list,
        description="Knowledge bases created and ingested at start when they do not exist.",
    )
    ignore_pii_types: list[str] = Field(
        default_factory=lambda: ["LOCATION"],
        description="PII types that do not count at ingestion (office cities in a handbook are "
        "not personal data); the rest trigger the knowledge base's policy.",
    )
    max_upload_bytes: int = Field(
        default=10_000_000, ge=1024, description="Largest accepted upload, in bytes."
    )
    max_files_per_upload: int = Field(
        default=32, ge=1, description="Most files accepted in one upload."
    )
    ef_search: int = Field(
        default=128,
        ge=1,
        description="HNSW candidate list size at query time. Measured (benchmarks/README.md): "
        "recall@10 vs exact at 100k chunks 0.88 at 64, 0.94 at 128, 0.97 at 256; each costs "
        "well under a millisecond per search.",
    )
    resources: DeploymentResources = Field(
        default_factory=lambda: DeploymentResources(num_cpus=0.5, max_ongoing_requests=32),
        description="Ray Serve resources of the retriever deployment.",
    )

    def pii_policy_of(self, name: str) -> PiiPolicy:
        """The PII policy of a knowledge base by name."""
        listed = self.knowledge_bases.get(name)
        return listed.pii_policy if listed is not None else self.default_pii_policy


class RetentionSettings(_Section):
    """How long each class of data is kept; a scheduled job deletes what is older."""

    history_days: int | None = Field(
        default=365,
        ge=1,
        description="Conversations (content and metadata) untouched for this many days are "
        "deleted; null: kept until their user deletes them.",
    )
    check_interval_s: float = Field(
        default=3600.0, ge=10, description="Seconds between two runs of the retention job."
    )
    audit_days: int | None = Field(
        default=None,
        ge=1,
        description="Not enforced by the job: audit records are never deleted, because the "
        "chain must verify. Archive them with `enclave audit export` (a signed bundle) and "
        "keep the bundles for this long; null: keep the records forever.",
    )


class HistorySettings(_Section):
    """The owner-only placeholder vaults of conversations (envelope encryption)."""

    vault_key_file: Path | None = Field(
        default=None,
        description="The deployment key that wraps every user's history data key: 32 random "
        "bytes, raw or base64 (a mounted Secret in a cluster, never in the database); null: "
        "<data_dir>/secrets/history-vault-key.",
    )
    generate_vault_key: bool = Field(
        default=True,
        description="Create the key file (mode 600) on first use when it does not exist "
        "(embedded mode); false in a cluster, so that a missing Secret stops start-up instead "
        "of each replica wrapping keys with one of its own.",
    )
    retired_vault_key_files: list[Path] = Field(
        default_factory=list,
        description="Earlier deployment keys, read only to unwrap data keys they wrapped; "
        "each such key is re-wrapped under vault_key_file when its user's next answer is "
        "recorded, and all at once by `enclave history rewrap`; remove a file once that "
        "reports nothing unreadable.",
    )

    def vault_key_path(self, data_dir: Path) -> Path:
        """The deployment key file: the configured one, else the default in the data dir."""
        if self.vault_key_file is not None:
            return self.vault_key_file
        return data_dir / "secrets" / "history-vault-key"


class RaySettings(_Section):
    """The embedded Ray cluster (ignored when connecting to an existing cluster)."""

    address: str | None = Field(
        default=None, description="Existing cluster to join (e.g. 'auto'); null: start locally."
    )
    num_cpus: int = Field(
        default=4, ge=1, description="Logical CPUs the local Ray node advertises."
    )
    object_store_memory_mb: int = Field(
        default=512, ge=75, description="Object store size of the local node, in MiB."
    )
    metrics_export_port: int | None = Field(
        default=8080,
        ge=1024,
        le=65535,
        description=(
            "Port of Ray's own metrics (ray_*, ray_serve_*) on 127.0.0.1, for a local "
            "Prometheus (8080, as on the chart's Ray pods); null: a random port Ray picks."
        ),
    )
    app_name: str = Field(default="enclave", description="Serve application name.")
    serve_fast_path: bool = Field(
        default=True,
        description="Run each Serve replica's code and its handles' router on the replica's "
        "own event loop instead of extra threads (two of Ray Serve's throughput-optimised "
        "settings; without its gRPC and direct-ingress parts, which would open more ports). "
        "Profiled under 32 streams, the two threads took 42 % of the API replica's samples.",
    )
    proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        default="EveryNode",
        description="Nodes that run Serve's HTTP proxy when joining a cluster (ray.address): "
        "HeadOnly when several Ray nodes share one host, whose proxies would otherwise share "
        "the port (and a stream would die with whichever node it landed on).",
    )
    startup_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="How long `enclave serve` waits for every deployment to be ready before it "
        "stops, naming the deployments still starting and where their logs are (a first start "
        "on 2 CPU cores takes about two minutes).",
    )
    log_to_console: bool = Field(
        default=False,
        description="`enclave serve` also shows the Ray, Serve and model-replica logs on its "
        "console (as `enclave serve --verbose` does for one run). They always go to files "
        "under <data_dir>/ray/session_latest/logs; the console keeps the launcher's own lines, "
        "errors and the greeting.",
    )


def local_url_problem(
    url: str,
    allowed_hosts: list[str],
    *,
    what: str,
    setting: str,
    base_url_only: bool = False,
) -> str | None:
    """Why ``url`` may not be called (no egress: its host must match ``allowed_hosts``,
    loopback or in-cluster by default), or None when it may."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        return f"{what} must be http(s), got {parts.scheme or 'no'} scheme"
    if parts.username or parts.password:
        return f"{what} must not carry credentials"
    if base_url_only and (parts.query or parts.fragment):
        return f"{what} must be a base URL without query or fragment"
    host = (parts.hostname or "").lower()
    if not host:
        return f"{what} names no host"
    if not any(fnmatchcase(host, pattern.lower()) for pattern in allowed_hosts):
        return (
            f"{what}'s host {host!r} is not in {setting} {allowed_hosts}: "
            "it must stay on this host or inside the cluster"
        )
    return None


class TelemetrySettings(_Section):
    """Logs, metrics and traces."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Minimum level logged."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="Log line format: structured JSON or plain text."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL on this host or inside the cluster (e.g. "
        "http://otel-collector.observability.svc:4318); traces are POSTed to "
        "<endpoint>/v1/traces. null: spans are made (trace ids in logs, headers and audit "
        "records) but exported nowhere.",
    )
    otlp_allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1", "*.svc", "*.cluster.local"],
        description="Hosts the OTLP endpoint may name (shell-style patterns): loopback and "
        "in-cluster Services only, so traces never leave the premises.",
    )
    service_name: str = Field(
        default="enclave",
        min_length=1,
        max_length=64,
        description="OpenTelemetry service.name of every Enclave process.",
    )
    trace_sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of requests whose spans are recorded and exported (decided once at "
        "the API; replicas follow it). Trace ids exist for every request either way.",
    )

    def otlp_endpoint_problem(self, url: str) -> str | None:
        """Why ``url`` may not receive traces, or None when it may."""
        return local_url_problem(
            url,
            self.otlp_allowed_hosts,
            what="the OTLP endpoint",
            setting="telemetry.otlp_allowed_hosts",
            base_url_only=True,
        )

    @model_validator(mode="after")
    def _otlp_stays_inside(self) -> TelemetrySettings:
        problem = (
            None if self.otlp_endpoint is None else self.otlp_endpoint_problem(self.otlp_endpoint)
        )
        if problem is not None:
            raise ValueError(problem)
        return self


class CanarySettings(_Section):
    """The viability canary: one synthetic conversation through the public API, on a schedule."""

    enabled: bool = Field(
        default=True,
        description="The API replica runs the canary every interval_s with a staff key of its "
        "own (issued once, kept in <data_dir>/secrets/canary-api-key); its results are in that "
        "replica's /metrics. In a cluster with several API replicas use the chart's CronJob "
        "instead (false).",
    )
    interval_s: float = Field(
        default=900.0,
        ge=10,
        description="Seconds between two canary runs in the embedded stack. One run costs about "
        "1.2k tokens of its key's and the tenant's quota (~115k a day at 900 s).",
    )
    api_key_file: Path | None = Field(
        default=None,
        description="File holding the canary's API key (a mounted Secret) for `enclave canary`; "
        "null: the ENCLAVE_CANARY_API_KEY variable.",
    )
    question: str = Field(
        default="Which VPN profile should I use on hotel wifi?",
        min_length=1,
        description="Knowledge-base question the canary asks (from the sample handbook's "
        "evaluation set by default).",
    )
    expected_document: str = Field(
        default="it-vpn",
        min_length=1,
        description="Document id that must be among the answer's sources (enclave.sources).",
    )
    timeout_s: float = Field(
        default=120.0, gt=0, description="Longest one canary run may take, all steps together."
    )


class AlertSettings(_Section):
    """Where operational alerts (canary failures and recoveries) are posted."""

    webhook_url: str | None = Field(
        default=None,
        description="Slack-compatible incoming-webhook URL inside the cluster or on this host "
        "(an in-cluster relay, never a public service); null: no alerts are posted. It must "
        "not carry credentials: the settings are hashed and printed.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1", "*.svc", "*.cluster.local"],
        description="Hosts the webhook URL may name (shell-style patterns): loopback and "
        "in-cluster Services only, so an alert never leaves the premises.",
    )
    timeout_s: float = Field(
        default=5.0, gt=0, description="Timeout of one webhook POST (one retry follows a failure)."
    )

    def url_problem(self, url: str) -> str | None:
        """Why ``url`` may not receive alerts, or None when it may."""
        return local_url_problem(
            url, self.allowed_hosts, what="the webhook URL", setting="alerts.allowed_hosts"
        )

    @model_validator(mode="after")
    def _webhook_stays_inside(self) -> AlertSettings:
        problem = None if self.webhook_url is None else self.url_problem(self.webhook_url)
        if problem is not None:
            raise ValueError(problem)
        return self


class Settings(BaseSettings):
    """The effective configuration of one Enclave deployment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    profile: str = Field(default="default", description="Name of the active settings profile.")
    paths: PathsSettings = Field(default_factory=PathsSettings, description="Where state lives.")
    api: ApiSettings = Field(default_factory=ApiSettings, description="HTTP API.")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="Language models.")
    context: ContextSettings = Field(
        default_factory=ContextSettings, description="Context-window budgeting."
    )
    pii: PIISettings = Field(default_factory=PIISettings, description="PII detection.")
    guard: GuardSettings = Field(
        default_factory=GuardSettings, description="Intent routing and injection defence."
    )
    prompts: PromptSettings = Field(
        default_factory=PromptSettings, description="Versioned prompts and their suites."
    )
    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings, description="The SQL store."
    )
    audit: AuditSettings = Field(
        default_factory=AuditSettings, description="The tamper-evident audit log."
    )
    retrieval: RetrievalSettings = Field(
        default_factory=RetrievalSettings, description="Knowledge bases and grounded answers."
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings, description="How long data is kept."
    )
    history: HistorySettings = Field(
        default_factory=HistorySettings, description="Owner-only placeholder vaults."
    )
    ray: RaySettings = Field(default_factory=RaySettings, description="Embedded Ray.")
    telemetry: TelemetrySettings = Field(
        default_factory=TelemetrySettings, description="Logs, metrics, traces."
    )
    auth: AuthSettings = Field(
        default_factory=AuthSettings, description="Authentication: OIDC tokens and API keys."
    )
    limits: LimitsSettings = Field(
        default_factory=LimitsSettings, description="Request rate limits and token quotas."
    )
    canary: CanarySettings = Field(
        default_factory=CanarySettings, description="The viability canary."
    )
    alerts: AlertSettings = Field(
        default_factory=AlertSettings, description="Alert webhook (canary failures, recoveries)."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the merged YAML files: env vars must win over them.
        return (env_settings, init_settings)

    def with_paths_resolved(self, base: Path) -> Settings:
        """A copy whose paths are absolute (relative ones resolved against ``base``)."""

        def absolute(path: Path) -> Path:
            return path if path.is_absolute() else (base / path).resolve()

        store = self.paths.model_store_dir
        paths = PathsSettings(
            data_dir=absolute(self.paths.data_dir),
            model_store_dir=None if store is None else absolute(store),
        )
        prompts = self.prompts.model_copy(update={"directory": absolute(self.prompts.directory)})
        seeds = [
            seed.model_copy(update={"path": absolute(seed.path)}) for seed in self.retrieval.seed
        ]
        retrieval = self.retrieval.model_copy(update={"seed": seeds})
        url_file = self.database.url_file
        database = self.database.model_copy(
            update={"url_file": None if url_file is None else absolute(url_file)}
        )
        key_file = self.audit.signing_key_file
        audit = self.audit.model_copy(
            update={"signing_key_file": None if key_file is None else absolute(key_file)}
        )
        vault_file = self.history.vault_key_file
        history = self.history.model_copy(
            update={
                "vault_key_file": None if vault_file is None else absolute(vault_file),
                "retired_vault_key_files": [
                    absolute(p) for p in self.history.retired_vault_key_files
                ],
            }
        )
        return self.model_copy(
            update={
                "paths": paths,
                "prompts": prompts,
                "retrieval": retrieval,
                "database": database,
                "audit": audit,
                "history": history,
            }
        )


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML: {exc}"
        raise ConfigurationError(msg) from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        msg = f"{path}: the top level must be a mapping, got {type(loaded).__name__}"
        raise ConfigurationError(msg)
    return loaded


def _format_errors(exc: ValidationError, sources: list[str]) -> str:
    lines = [f"Invalid settings ({exc.error_count()} problem(s)); read from {', '.join(sources)}:"]
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        lines.append(f"  - {location}: {error['msg']} (got {error.get('input')!r})")
    lines.append(
        f"Environment variables use the prefix {ENV_PREFIX} and '__' between levels, "
        f"e.g. {ENV_PREFIX}API__PORT=9000."
    )
    return "\n".join(lines)


def load_settings(
    config_dir: Path | None = None,
    profile: str | None = None,
) -> Settings:
    """Load the effective settings: defaults, YAML files, profile overlay, then env vars."""
    env = os.environ
    config_dir = Path(env.get("ENCLAVE_CONFIG_DIR", ".")) if config_dir is None else config_dir
    profile = profile or env.get(f"{ENV_PREFIX}PROFILE") or "default"
    files = [config_dir / "settings.yaml"]
    if profile != "default":
        overlay = config_dir / f"settings-{profile}.yaml"
        if not overlay.is_file():
            msg = f"Profile {profile!r} selected but {overlay} does not exist."
            raise ConfigurationError(msg)
        files.append(overlay)
    merged: dict[str, Any] = {}
    read: list[str] = []
    for path in files:
        if path.is_file():
            merged = _deep_merge(merged, _read_yaml(path))
            read.append(str(path))
    merged["profile"] = profile
    read.append(f"{ENV_PREFIX}* environment")
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigurationError(_format_errors(exc, read)) from exc
    return settings.with_paths_resolved(config_dir.resolve())


def config_version(settings: Settings) -> str:
    """The canonical content hash of the effective settings (``cfg_`` + 16 hex)."""
    canonical = json.dumps(
        settings.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return "cfg_" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
