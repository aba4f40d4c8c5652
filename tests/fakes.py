"""Small in-memory stand-ins behind the Protocols, for unit tests of logic only."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from index.base import RetrievalResult, Source
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
    """Answers every request with ``reply``, one word per delta; can be told to fail."""

    reply: str = "Hello from the scripted model"
    engine: str = "scripted"
    model: str = "test-model"
    fail_before_first: bool = False
    fail_after: int | None = None
    delay_s: float = 0.0
    requests: list[GenerationRequest] = field(default_factory=list)
    cancelled: int = 0
    healthy: bool = True

    def info(self) -> EngineInfo:
        return EngineInfo(engine=self.engine, model=self.model, max_model_len=256)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        self.requests.append(request)
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
                last = index == len(words) - 1
                yield GenerationDelta(
                    text=word if index == 0 else " " + word,
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
                return GuardVerdict(intent, 0.9, False, 0.01, ())
        return GuardVerdict("it_support", 0.8, False, 0.02, ())

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

    async def retrieve(
        self, tenant: str, name: str, query: str, *, k: int, min_score: float
    ) -> RetrievalResult:
        self.queries.append((tenant, name, query))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("index unreadable")
        if name != "handbook":
            raise UnknownKnowledgeBase(f"No knowledge base named {name!r}.")
        hits = tuple(s for s in self.sources if s.score >= min_score)[:k]
        return RetrievalResult("v000001-00000000", hits)

    async def check_health(self) -> None:
        if self.fail:
            raise RuntimeError("index unreadable")
