"""Small in-memory stand-ins behind the Protocols, for unit tests of logic only."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.stores.memory import MemoryStore
from prometheus_client import CollectorRegistry

from api.chat.request_plan import RequestPlan
from api.security import (
    Authenticator,
    MemoryApiKeyStore,
    MemoryQuotaLedger,
    RateLimiter,
    Role,
    issue_api_key,
)
from api.services import Security, Services
from api.stores.history import ConversationStore
from api.stores.vault_keys import DeploymentKey, HistoryKeyring
from core.audit import AuditLog, AuditSigner
from core.db import Database
from core.errors import ServiceUnavailable
from core.prompts import global_layer, load_repo_prompt, resolve
from core.runtime_overrides import effective_runtime
from core.settings import Settings, config_version
from index.base import (
    DocumentInfo,
    IngestOutcome,
    KnowledgeBaseInfo,
    Passage,
    PiiPolicy,
    RetrievalResult,
    Source,
    UploadedFile,
)
from index.errors import UnknownKnowledgeBase
from models.guard_types import GuardVerdict
from models.llm.base import ChatMessage, EngineInfo, GenerationDelta, GenerationRequest
from models.pii.base import Entity, PIISpan, ScanResult


class WordTokenizer:
    """One token per whitespace-separated word, plus 3 per message for the template."""

    def prompt_token_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        ids: list[int] = []
        for message in messages:
            ids.extend([1, 2, 3])
            ids.extend(range(100, 100 + len(message.content.split())))
        return ids


@dataclass
class ScriptedLLM:
    """Answers every request with ``reply``, one word per delta; can be told to fail.

    ``stall_after``: go silent for ``stall_s`` before that word (0: before the first).
    ``overloaded``: refuse like a full Serve queue (``ServiceUnavailable``).
    A request with ``continue_from`` gets the words with a leading space, as a model
    continuing someone's text writes the separating space itself.
    """

    reply: str = "Hello from the scripted model"
    engine: str = "scripted"
    model: str = "test-model"
    fail_before_first: bool = False
    fail_after: int | None = None
    delay_s: float = 0.0
    requests: list[GenerationRequest] = field(default_factory=list)
    cancelled: int = 0
    healthy: bool = True
    stall_after: int | None = None
    stall_s: float = 3600.0
    overloaded: bool = False

    def info(self) -> EngineInfo:
        return EngineInfo(engine=self.engine, model=self.model, max_model_len=256)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        self.requests.append(request)
        if self.overloaded:
            raise ServiceUnavailable("queue full", retry_after=2)
        if self.fail_before_first:
            raise RuntimeError("engine down")
        words = self.reply.split(" ")[: request.sampling.max_tokens]
        prompt = len(request.prompt_token_ids or ())
        finished = False
        try:
            for index, word in enumerate(words):
                if self.fail_after is not None and index >= self.fail_after:
                    raise RuntimeError("engine died mid-stream")
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if self.stall_after is not None and index == self.stall_after:
                    await asyncio.sleep(self.stall_s)
                last = index == len(words) - 1
                yield GenerationDelta(
                    text=word if index == 0 and not request.continue_from else " " + word,
                    finish_reason="stop" if last else None,
                    prompt_tokens=prompt,
                    completion_tokens=index + 1,
                )
            finished = True
        finally:
            if not finished:
                self.cancelled += 1

    async def running_requests(self) -> int:
        return 0

    async def check_health(self) -> None:
        if not self.healthy:
            raise RuntimeError("unhealthy")


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
_PHONE = re.compile(r"\(?\d{3}\)?[ -]\d{3}-\d{4}")
_NAMES = ("Ana Silva", "Joe Bloggs")


class RegexPII:
    """Stands in for Presidio: e-mails, 3-3-4 phones and two known names."""

    def hold_from(self, text: str) -> int:
        return len(text)

    def find(self, text: str) -> list[PIISpan]:
        spans = [PIISpan(m.start(), m.end(), "EMAIL_ADDRESS", 1.0) for m in _EMAIL.finditer(text)]
        spans += [PIISpan(m.start(), m.end(), "PHONE_NUMBER", 0.9) for m in _PHONE.finditer(text)]
        for name in _NAMES:
            for m in re.finditer(re.escape(name), text):
                spans.append(PIISpan(m.start(), m.end(), "PERSON", 0.85))
        return sorted(spans, key=lambda s: s.start)


# What the fake guard says its encoder made of a message (the retriever may reuse it).
FAKE_EMBEDDING = (b"\x00\x00\x80?" * 4, "fake-encoder@1")


@dataclass
class KeywordGuard:
    """Stands in for the guard models: keyword verdicts, regex PII; counts its calls."""

    scanned: list[str] = field(default_factory=list)
    healthy: bool = True

    async def scan(self, texts: list[str]) -> list[ScanResult]:
        self.scanned.extend(texts)
        finder = RegexPII()
        return [
            ScanResult(
                pii=tuple(finder.find(t)),
                entities=tuple(
                    Entity("PERSON", s.start, s.end)
                    for s in finder.find(t)
                    if s.entity_type == "PERSON"
                ),
            )
            for t in texts
        ]

    async def check(self, text: str) -> GuardVerdict:
        lowered = text.lower()
        if "ignore previous instructions" in lowered:
            return GuardVerdict("it_support", 0.9, True, 0.97, ("override_instructions",))
        for word, intent in (
            ("weather", "out_of_scope"),
            ("human", "escalate_to_human"),
            ("hello", "small_talk"),
        ):
            if word in lowered:
                return GuardVerdict(intent, 0.9, False, 0.01, (), *FAKE_EMBEDDING)
        return GuardVerdict("it_support", 0.8, False, 0.02, (), *FAKE_EMBEDDING)

    async def check_health(self) -> None:
        if not self.healthy:
            raise RuntimeError("guard down")


@dataclass
class FakeKnowledge:
    """Stands in for the retriever: fixed sources per query word; can fail or stall."""

    sources: tuple[Source, ...] = (
        Source("handbook", "it-vpn", "VPN", "it-vpn#0-aaaa", 0.81, ("Hotels",), "Use profile B."),
        Source("handbook", "it-wifi", "Wi-Fi", "it-wifi#1-bbbb", 0.52, (), "Guest SSID: NW."),
    )
    fail: bool = False
    delay_s: float = 0.0
    queries: list[tuple[str, str, str]] = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)

    async def retrieve(
        self,
        tenant: str,
        name: str,
        query: str,
        *,
        k: int,
        min_score: float,
        embedding: bytes = b"",
        embedding_model: str = "",
    ) -> RetrievalResult:
        self.queries.append((tenant, name, query))
        self.embeddings.append(embedding_model if embedding else "")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("index unreadable")
        self._known(tenant, name)
        hits = tuple(s for s in self.sources if s.score >= min_score)[:k]
        return RetrievalResult("v000001-00000000", hits)

    # The admin side: one knowledge base, "handbook", in tenant "default". ------------------
    @staticmethod
    def _known(tenant: str, name: str) -> None:
        if (tenant, name) != ("default", "handbook"):
            raise UnknownKnowledgeBase(f"No knowledge base named {name!r}.")

    def _info(self) -> KnowledgeBaseInfo:
        now = "2026-11-27T00:00:00Z"
        return KnowledgeBaseInfo(
            "handbook", "default", "", "keep", "v000001-00000000", 2, 0, 2, "seed", now, now
        )

    async def create_base(
        self,
        tenant: str,
        name: str,
        *,
        description: str = "",
        pii_policy: PiiPolicy | None = None,
        actor: str = "system",
    ) -> KnowledgeBaseInfo:
        return replace(self._info(), name=name, tenant=tenant, version=None)

    async def list_bases(self, tenant: str) -> list[KnowledgeBaseInfo]:
        return [self._info()] if tenant == "default" else []

    async def get_base(self, tenant: str, name: str) -> KnowledgeBaseInfo:
        self._known(tenant, name)
        return self._info()

    async def delete_base(self, tenant: str, name: str) -> None:
        self._known(tenant, name)

    async def upload(
        self, tenant: str, name: str, files: list[UploadedFile], *, actor: str = "system"
    ) -> IngestOutcome:
        self._known(tenant, name)
        return IngestOutcome("v000002-00000000", (), len(files), len(files), 0, 0.0)

    async def list_documents(self, tenant: str, name: str) -> list[DocumentInfo]:
        self._known(tenant, name)
        return []

    async def delete_document(self, tenant: str, name: str, doc_id: str) -> IngestOutcome:
        self._known(tenant, name)
        return IngestOutcome("v000003-00000000", (), 1, 0, 1, 0.0)

    async def reindex(self, tenant: str, name: str) -> IngestOutcome:
        self._known(tenant, name)
        return IngestOutcome("v000004-00000000", (), 2, 0, 2, 0.0)

    async def passage(self, tenant: str, name: str, chunk_id: str) -> Passage:
        self._known(tenant, name)
        for s in self.sources:
            if s.chunk_id == chunk_id:
                return Passage(name, s.doc_id, s.title, s.chunk_id, s.heading_path, 0, 1, s.text)
        raise UnknownKnowledgeBase(f"No passage {chunk_id!r}.")

    async def check_health(self) -> None:
        if self.fail:
            raise RuntimeError("index unreadable")


@dataclass
class TestKeys:
    """A memory key store with one API key per role (tenant ``default``) and a foreign
    tenant's staff and admin (tenant ``globex``), plus a revoked and an expired key."""

    __test__ = False  # not a test class, whatever its name

    store: MemoryApiKeyStore
    plaintext: dict[str, str]

    @classmethod
    async def issue(cls) -> TestKeys:
        store = MemoryApiKeyStore()
        plaintext: dict[str, str] = {}
        wanted: list[tuple[str, str, tuple[Role, ...]]] = [
            ("staff", "default", ("staff",)),
            ("tenant_admin", "default", ("tenant_admin",)),
            ("auditor", "default", ("auditor",)),
            ("platform_admin", "default", ("platform_admin",)),
            ("foreign_staff", "globex", ("staff",)),
            ("foreign_admin", "globex", ("tenant_admin",)),
            ("revoked", "default", ("staff",)),
            ("expired", "default", ("staff",)),
        ]
        now = datetime.now(UTC)
        for name, tenant, roles in wanted:
            issued = issue_api_key(
                tenant=tenant, roles=roles, name=name, now=now - timedelta(days=2)
            )
            record = issued.record
            if name == "expired":
                record = replace(record, expires_at=now - timedelta(days=1))
            await store.add(record)
            plaintext[name] = issued.plaintext
        await store.revoke(plaintext["revoked"][4:20], now)
        return cls(store, plaintext)

    def header(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plaintext[who]}"}

    def security(self, settings: Settings) -> Security:
        limits = settings.limits
        return Security(
            authenticator=Authenticator(oidc=None, api_keys=self.store),
            rate_limiter=RateLimiter.from_settings(limits, MemoryStore()),
            quotas=MemoryQuotaLedger(
                alarm_levels=limits.alarm_levels, registry=CollectorRegistry()
            ),
            api_keys=self.store,
            api_key_pepper=None,
        )


def build_services(
    settings: Settings,
    keys: TestKeys,
    database: Database,
    **overrides: Any,
) -> Services:
    """Services over the fakes, a real SQLite store and a fresh audit key; override any part."""
    parts: dict[str, Any] = {
        "settings": settings,
        "config_version": config_version(settings),
        "primary": ScriptedLLM(),
        "fallback": None,
        "tokenizer": WordTokenizer(),
        "guard": KeywordGuard(),
        "output_scanner": RegexPII(),
        "canary_token": "canary",
        "security": keys.security(settings),
        "database": database,
        "audit": AuditLog(AuditSigner.generate()),
        "history": ConversationStore(database, HistoryKeyring(DeploymentKey.generate())),
        "knowledge": FakeKnowledge(),
    }
    parts.update(overrides)
    return Services(**parts)


def repo_plan(settings: Settings, *, tenant: str = "default") -> RequestPlan:
    """A request plan under the repo's chat prompt and the settings' runtime values (what a
    tenant without prompt versions or runtime overrides runs under)."""
    prompt = resolve([global_layer(load_repo_prompt(settings.prompts.directory / "chat"))])
    runtime = effective_runtime(settings, None, 0, None, 0)
    return RequestPlan(
        prompt=prompt,
        runtime=runtime,
        config_version=f"{config_version(settings)}.{runtime.version}",
        tenant=tenant,
    )
