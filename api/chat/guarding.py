"""The guard stage of a chat: scrub PII into placeholders, classify intent and injection.

PII scanning and classification run concurrently; the scan of a message is cached by its
hash, so a conversation's history is scanned once, not on every turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

from api.chat.resilience import retry_idempotent
from api.services import GuardClient
from core.errors import ServiceUnavailable
from core.metrics import EnclaveMetrics
from core.settings import GuardSettings
from models.guard_types import GuardVerdict
from models.llm.base import ChatMessage
from models.pii.base import ScanResult
from models.pii.placeholders import PlaceholderVault
from models.pii.places import PlaceAllowList

__all__ = ["Decision", "GuardOutcome", "GuardStage", "scrub_free_text"]

Decision = Literal["answer", "answer_without_documents", "refuse", "escalate", "block"]


@dataclass
class GuardOutcome:
    """The scrubbed conversation and what the guards decided (no raw PII)."""

    messages: tuple[ChatMessage, ...]
    vault: PlaceholderVault
    verdict: GuardVerdict
    decision: Decision
    entities: dict[str, int]
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def protected(self) -> dict[str, int]:
        """Distinct PII values protected, per type."""
        return self.vault.counts()


class _ScanCache:
    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: OrderedDict[str, ScanResult] = OrderedDict()

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> ScanResult | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: str, value: ScanResult) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class GuardStage:
    """Runs the guards for one request."""

    def __init__(self, client: GuardClient, settings: GuardSettings) -> None:
        self._client = client
        self._settings = settings
        self._cache = _ScanCache()

    async def run(
        self, messages: Sequence[ChatMessage], allowed_places: Collection[str] = ()
    ) -> GuardOutcome:
        """Scan every message and classify the newest user turn, concurrently.

        ``allowed_places`` (the tenant's runtime ``allowed_places``) reach the model as
        written, unless a person's life is attached to them (``models.pii.places``).
        """
        started = time.perf_counter()
        last_user = next(m.content for m in reversed(messages) if m.role == "user")
        scans, verdict = await asyncio.gather(
            self._scan([m.content for m in messages]), self._check(last_user)
        )
        places = PlaceAllowList(allowed_places)
        vault = PlaceholderVault()
        scrubbed = tuple(
            ChatMessage(m.role, vault.scrub(m.content, places.keep_protected(m.content, scan.pii)))
            for m, scan in zip(messages, scans[0], strict=True)
        )
        entities = Counter(e.label for e in scans[0][-1].entities)
        timings = {
            "pii_ms": scans[1],
            "classify_ms": verdict[1],
            "guards_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        return GuardOutcome(
            messages=scrubbed,
            vault=vault,
            verdict=verdict[0],
            decision=self._decide(verdict[0]),
            entities=dict(entities),
            timings_ms=timings,
        )

    async def _scan(self, texts: list[str]) -> tuple[list[ScanResult], float]:
        started = time.perf_counter()
        keys = [self._cache.key(t) for t in texts]
        results: list[ScanResult | None] = [self._cache.get(k) for k in keys]
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            pending = [texts[i] for i in missing]
            fresh = await retry_idempotent(lambda: self._client.scan(pending))
            for index, result in zip(missing, fresh, strict=True):
                results[index] = result
                self._cache.put(keys[index], result)
        done = [r for r in results if r is not None]
        return done, round((time.perf_counter() - started) * 1000, 2)

    async def _check(self, text: str) -> tuple[GuardVerdict, float]:
        started = time.perf_counter()
        verdict = await retry_idempotent(lambda: self._client.check(text))
        return verdict, round((time.perf_counter() - started) * 1000, 2)

    def _decide(self, verdict: GuardVerdict) -> Decision:
        confident = verdict.intent_confidence >= self._settings.min_intent_confidence
        if verdict.injection:
            # "get me a human" can look like an attack to the classifier; handing over to a
            # person is as safe as blocking (neither reaches the model), and more helpful.
            if (
                confident
                and not verdict.injection_rules
                and self._settings.intent_actions.get(verdict.intent) == "escalate"
            ):
                return "escalate"
            return "block"
        if not confident:
            return "answer"
        return self._settings.intent_actions.get(verdict.intent, "answer")


async def scrub_free_text(guard: GuardClient, text: str, metrics: EnclaveMetrics) -> str:
    """``text`` (a feedback comment, an admin's note) with its personal data replaced by
    placeholders, scanned by the PII deployment as chat messages are; 503 if it cannot be."""
    try:
        [scan] = await retry_idempotent(lambda: guard.scan([text]))
    except Exception as exc:  # any failure of the scanner deployment: store nothing unscanned
        msg = "The PII scanner is unavailable, so the text cannot be checked; retry shortly."
        raise ServiceUnavailable(msg, retry_after=10) from exc
    vault = PlaceholderVault()
    scrubbed = vault.scrub(text, scan.pii)
    for entity_type, count in vault.counts().items():
        metrics.pii(entity_type, count)
    return scrubbed
