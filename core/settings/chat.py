"""What a chat request runs under: PII detection, the guards, prompts, context budgeting
and retrieval from the knowledge bases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from core.settings.base import Section
from core.settings.deployment import DeploymentResources

__all__ = [
    "ContextSettings",
    "GuardSettings",
    "IntentAction",
    "KnowledgeBaseSettings",
    "PIIPattern",
    "PIISettings",
    "PiiPolicy",
    "PromptSettings",
    "RetrievalSettings",
    "SeedKnowledgeBase",
]


class PIIPattern(Section):
    """An organisation-specific identifier recognised by a regular expression."""

    entity: str = Field(description="Entity type reported, e.g. EMPLOYEE_ID.")
    regex: str = Field(description="Python regular expression matching the identifier.")
    score: float = Field(default=0.9, ge=0, le=1, description="Confidence of a match.")
    context: list[str] = Field(
        default_factory=list, description="Words nearby that raise the confidence."
    )


def _default_pii_patterns() -> list[PIIPattern]:
    return [PIIPattern(entity="EMPLOYEE_ID", regex=r"\bEMP-\d{6}\b", context=["employee"])]


class PIISettings(Section):
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


class GuardSettings(Section):
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
        "its generation (api/chat/repetition.py). Off only to measure the engine at forced "
        "answer lengths: the serving benchmark asks `ignore_eos`, which makes a small model loop.",
    )
    resources: DeploymentResources = Field(
        default_factory=lambda: DeploymentResources(num_cpus=0.5, max_ongoing_requests=32),
        description="Ray Serve resources of the intent/injection deployment.",
    )


class PromptSettings(Section):
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


class ContextSettings(Section):
    """How a conversation is fitted to the model's context window."""

    reserve_retrieval_tokens: int = Field(
        default=0, ge=0, description="Tokens kept free for retrieved documents."
    )
    min_answer_tokens: int = Field(
        default=16, ge=1, description="Smallest answer budget left after fitting the prompt."
    )


PiiPolicy = Literal["keep", "redact", "reject"]


class KnowledgeBaseSettings(Section):
    """Settings of one named knowledge base."""

    pii_policy: PiiPolicy = Field(
        default="redact",
        description="What ingestion does with PII found in a document: keep it, replace each "
        "value by its type, or reject the document.",
    )


class SeedKnowledgeBase(Section):
    """A folder of documents ingested into a knowledge base when that base does not exist."""

    name: str = Field(description="Knowledge-base name.")
    tenant: str = Field(default="default", description="Tenant that owns it.")
    path: Path = Field(description="Folder of documents (relative to the config dir).")
    description: str = Field(default="", description="Shown in the admin API.")


class RetrievalSettings(Section):
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
