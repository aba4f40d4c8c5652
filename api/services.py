"""What the API needs from the rest of the stack, as Protocols (the composition root fills them)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry

from api.security import ApiKeyRecord, ApiKeyStore, Authenticator, QuotaLedger, RateLimiter
from api.stack_status import StackInspector
from api.stores.history import ConversationStore
from core.audit import AuditLog
from core.db import Database
from core.metrics import EnclaveMetrics
from core.settings import Settings
from index.base import KnowledgeService
from models.guard_types import GuardVerdict
from models.llm.base import ChatMessage, EngineInfo, GenerationDelta, GenerationRequest
from models.pii.base import PIISpan, ScanResult

__all__ = [
    "ApiKeyAdmin",
    "GuardClient",
    "LLMClient",
    "OutputScanner",
    "PromptTokenizer",
    "Security",
    "Services",
]


class GuardClient(Protocol):
    """The guard models: PII/NER scanning and intent/injection classification."""

    async def scan(self, texts: list[str]) -> list[ScanResult]:
        """PII spans and named entities, one result per text."""

    async def check(self, text: str) -> GuardVerdict:
        """Intent and injection verdict for one message."""

    async def check_health(self) -> None:
        """Raise if a guard model cannot serve."""


class LLMClient(Protocol):
    """A reachable language model: a Serve deployment handle, or an engine in-process."""

    def info(self) -> EngineInfo:
        """The engine and model behind this client."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream the answer; closing the iterator cancels generation."""

    async def check_health(self) -> None:
        """Raise if the model cannot serve."""

    async def running_requests(self) -> int:
        """Requests being generated right now."""


class PromptTokenizer(Protocol):
    """Renders a chat with the model's template and returns its token ids."""

    def prompt_token_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Token ids of the templated chat, generation prompt included."""


class OutputScanner(Protocol):
    """Finds PII in a reply without an NLP model (pattern recognizers)."""

    def find(self, text: str) -> list[PIISpan]:
        """PII spans in ``text``."""

    def hold_from(self, text: str) -> int:
        """Where trailing text that may still grow into PII starts (``len(text)`` if none)."""


class ApiKeyAdmin(ApiKeyStore, Protocol):
    """The key store, as the admin routes use it."""

    async def add(self, record: ApiKeyRecord, *, created_by: str = "system") -> None:
        """Store a new record."""

    async def list_keys(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        """Every key (of one tenant, if given), newest first."""


@dataclass(frozen=True, slots=True)
class Security:
    """Who the caller is, what they may do, and how much: the pieces the guard composes."""

    authenticator: Authenticator
    rate_limiter: RateLimiter
    quotas: QuotaLedger
    api_keys: ApiKeyAdmin
    api_key_pepper: bytes | None


@dataclass(frozen=True, slots=True)
class Services:
    """Everything ``create_app`` composes."""

    settings: Settings
    config_version: str
    primary: LLMClient
    fallback: LLMClient | None
    tokenizer: PromptTokenizer
    guard: GuardClient
    output_scanner: OutputScanner
    canary_token: str
    security: Security
    database: Database
    audit: AuditLog
    history: ConversationStore
    knowledge: KnowledgeService | None = None
    # Serve's deployments and the model manifest, for /v1/admin/status (None outside Serve).
    stack: StackInspector | None = None
    # Each app its own registry unless given one (tests build many apps in one process).
    metrics: EnclaveMetrics = field(default_factory=lambda: EnclaveMetrics(CollectorRegistry()))
