"""Quality signals on answers, and the quality view built from them and from the history.

Signals (table ``quality_events``) are about one answer, named by its request id:
explicit ratings (``thumbs_up``/``thumbs_down``, one per user and answer, the newest wins)
and implicit ones (``regenerate``, ``copy``, ``abandoned``, ``rephrase``). Each carries the
prompt, config and model versions of the answer it is about, taken from the answer's
lineage in the history, so that a change of version shows as a step in the quality view.

The quality view (:meth:`QualityStore.summary`) groups by UTC day and prompt version in
Python over the rows of the window, so that SQLite and PostgreSQL give the same result.
"""

from __future__ import annotations

import difflib
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import delete, insert, select

from core.db import Database, as_utc, conversations, messages, quality_events
from core.errors import InvalidRequest

__all__ = [
    "MAX_DAYS",
    "REFUSAL_DECISIONS",
    "REPHRASE_WINDOW_S",
    "SIGNAL_KINDS",
    "THUMBS",
    "AnswerRef",
    "QualityRow",
    "QualityStore",
    "QualitySummary",
    "is_rephrase",
]

SIGNAL_KINDS: Final = ("thumbs_up", "thumbs_down", "regenerate", "copy", "abandoned", "rephrase")
"""Every kind of quality event, explicit and implicit."""
THUMBS: Final = frozenset({"thumbs_up", "thumbs_down"})
"""The explicit ratings: one per user and answer."""
REFUSAL_DECISIONS: Final = frozenset({"refuse", "block", "escalate"})
"""Guard decisions that mean the user got no answer from the model."""
MAX_DAYS: Final = 90
"""The longest window the quality view covers."""
REPHRASE_WINDOW_S: Final = 60.0
"""How soon after an answer a similar question counts as a rephrase."""

_WORD = re.compile(r"\w+")
_JACCARD_MIN = 0.5
_RATIO_MIN = 0.6
# Column widths of quality_events: values from a lineage are ours, but never let a long
# one turn a rating into a database error.
_VERSION_CHARS = 80
_MODEL_CHARS = 128


@dataclass(frozen=True, slots=True)
class AnswerRef:
    """An answer of the caller's, and the versions that produced it (from its lineage)."""

    request_id: str
    conversation_id: str
    prompt_version: str | None
    config_version: str | None
    model: str | None


@dataclass(slots=True)
class QualityRow:
    """The quality of one day (or of the whole window) for one prompt version.

    Rates are ``None`` where their denominator is zero: no answers, or no ratings.
    """

    prompt_version: str | None
    day: date | None = None
    answers: int = 0
    fallbacks: int = 0
    refusals: int = 0
    degraded_retrievals: int = 0
    signals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNAL_KINDS, 0))

    @property
    def satisfaction_rate(self) -> float | None:
        """Thumbs up over all ratings."""
        up, down = self.signals["thumbs_up"], self.signals["thumbs_down"]
        return _ratio(up, up + down)

    @property
    def fallback_rate(self) -> float | None:
        """Answers the fallback engine gave, over all answers."""
        return _ratio(self.fallbacks, self.answers)

    @property
    def refusal_rate(self) -> float | None:
        """Turns refused, blocked or escalated by the guards, over all answers."""
        return _ratio(self.refusals, self.answers)

    @property
    def degraded_retrieval_rate(self) -> float | None:
        """Answers given without documents because retrieval failed, over all answers."""
        return _ratio(self.degraded_retrievals, self.answers)

    def as_json(self) -> dict[str, Any]:
        """The row as the API shows it (``date`` only on per-day rows)."""
        shown: dict[str, Any] = {} if self.day is None else {"date": self.day.isoformat()}
        return shown | {
            "prompt_version": self.prompt_version,
            "answers": self.answers,
            "satisfaction_rate": self.satisfaction_rate,
            "fallback_rate": self.fallback_rate,
            "refusal_rate": self.refusal_rate,
            "degraded_retrieval_rate": self.degraded_retrieval_rate,
            "signals": dict(self.signals),
        }


@dataclass(frozen=True, slots=True)
class QualitySummary:
    """The quality view of a tenant: per day and prompt version, and per prompt version."""

    tenant: str
    first_day: date
    last_day: date
    days: list[QualityRow]
    by_prompt_version: list[QualityRow]

    def as_json(self) -> dict[str, Any]:
        """The summary as ``GET /v1/quality`` returns it."""
        return {
            "tenant": self.tenant,
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "days": [row.as_json() for row in self.days],
            "by_prompt_version": [row.as_json() for row in self.by_prompt_version],
        }


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _clip(value: Any, chars: int) -> str | None:
    if value is None:
        return None
    return str(value)[:chars]


def _version_key(version: str | None) -> tuple[bool, str]:
    # Named versions in order, answers without a recorded version last.
    return (version is None, version or "")


def is_rephrase(previous_user_text: str, new_user_text: str, seconds_between: float) -> bool:
    """Whether a new user turn rephrases the previous one (an implicit "that didn't help").

    The rule: the new turn comes at most :data:`REPHRASE_WINDOW_S` (60) seconds after the
    previous answer, and says nearly the same thing as the previous user turn — the sets of
    words of the two (lowercased) overlap with a Jaccard index of at least 0.5, or
    ``difflib.SequenceMatcher`` rates the lowercased texts at least 0.6 alike. A text that
    is identical (ignoring case and spacing) is a retry or a regenerate, not a rephrase; an
    empty text is neither.
    """
    if not 0 <= seconds_between <= REPHRASE_WINDOW_S:
        return False
    before = " ".join(previous_user_text.lower().split())
    after = " ".join(new_user_text.lower().split())
    if not before or not after or before == after:
        return False
    words_before, words_after = set(_WORD.findall(before)), set(_WORD.findall(after))
    union = words_before | words_after
    if union and len(words_before & words_after) / len(union) >= _JACCARD_MIN:
        return True
    return difflib.SequenceMatcher(None, before, after).ratio() >= _RATIO_MIN


class QualityStore:
    """Quality events of a tenant's users, and the quality view over them and the history."""

    def __init__(
        self, database: Database, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._db = database
        self._clock = clock

    async def answer_of(self, tenant: str, user_id: str, request_id: str) -> AnswerRef | None:
        """The caller's own answer with this request id, or None (also for someone else's,
        and for one in a deleted conversation)."""
        query = (
            select(messages.c.conversation_id, messages.c.lineage)
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(
                messages.c.request_id == request_id,
                messages.c.role == "assistant",
                conversations.c.tenant == tenant,
                conversations.c.user_id == user_id,
                conversations.c.deleted_at.is_(None),
            )
            .order_by(messages.c.seq.desc())
            .limit(1)
        )
        async with self._db.reading() as connection:
            row = (await connection.execute(query)).first()
        if row is None:
            return None
        lineage = row.lineage if isinstance(row.lineage, dict) else {}
        return AnswerRef(
            request_id=request_id,
            conversation_id=row.conversation_id,
            prompt_version=_clip(lineage.get("prompt_version"), _VERSION_CHARS),
            config_version=_clip(lineage.get("config_version"), _VERSION_CHARS),
            model=_clip(lineage.get("model"), _MODEL_CHARS),
        )

    async def record(
        self,
        *,
        tenant: str,
        user_id: str,
        request_id: str,
        kind: str,
        conversation_id: str | None = None,
        comment: str | None = None,
        prompt_version: str | None = None,
        config_version: str | None = None,
        model: str | None = None,
    ) -> str:
        """Store one quality event; returns its id. ``comment`` must be scrubbed already.

        A rating replaces the user's earlier rating of the same answer (one transaction),
        so changing one's mind moves the answer from one side to the other, never both.
        """
        if kind not in SIGNAL_KINDS:
            msg = f"kind must be one of {', '.join(SIGNAL_KINDS)}; got {kind!r}."
            raise InvalidRequest(msg)
        event_id = f"qe_{secrets.token_hex(12)}"
        row = {
            "id": event_id,
            "tenant": tenant,
            "user_id": user_id,
            "request_id": request_id,
            "conversation_id": conversation_id,
            "kind": kind,
            "comment": comment,
            "prompt_version": _clip(prompt_version, _VERSION_CHARS),
            "config_version": _clip(config_version, _VERSION_CHARS),
            "model": _clip(model, _MODEL_CHARS),
            "created_at": self._clock(),
        }
        async with self._db.transaction() as connection:
            if kind in THUMBS:
                await connection.execute(
                    delete(quality_events).where(
                        quality_events.c.tenant == tenant,
                        quality_events.c.user_id == user_id,
                        quality_events.c.request_id == request_id,
                        quality_events.c.kind.in_(sorted(THUMBS)),
                    )
                )
            await connection.execute(insert(quality_events).values(**row))
        return event_id

    async def summary(self, tenant: str, *, days: int, today: date | None = None) -> QualitySummary:
        """The last ``days`` UTC days up to ``today`` (default: the current UTC day), per
        day and prompt version, and per prompt version over the window.

        Answers are the assistant messages stored in the tenant's conversations that day;
        signals count on the day they were given. Every day of the window appears, with
        one row per prompt version seen in the window (a chart needs the zeros), or a single
        row without a version when the window holds no data at all.
        """
        if not 1 <= days <= MAX_DAYS:
            msg = f"days must be between 1 and {MAX_DAYS}, got {days}."
            raise InvalidRequest(msg)
        last_day = today or self._clock().astimezone(UTC).date()
        first_day = last_day - timedelta(days=days - 1)
        start = datetime.combine(first_day, time(), tzinfo=UTC)
        end = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=UTC)
        answers, events = await self._window(tenant, start, end)

        cells: dict[tuple[date, str | None], QualityRow] = {}
        totals: dict[str | None, QualityRow] = {}

        def touched(day: date, version: str | None) -> Iterable[QualityRow]:
            key = (day, version)
            if key not in cells:
                cells[key] = QualityRow(version, day)
            if version not in totals:
                totals[version] = QualityRow(version)
            return (cells[key], totals[version])

        for created_at, lineage in answers:
            version = _clip(lineage.get("prompt_version"), _VERSION_CHARS)
            for row in touched(as_utc(created_at).date(), version):
                row.answers += 1
                row.fallbacks += int(lineage.get("fallback") is not None)
                row.refusals += int(lineage.get("decision") in REFUSAL_DECISIONS)
                row.degraded_retrievals += int(lineage.get("retrieval") == "degraded")
        for created_at, kind, version in events:
            if kind not in SIGNAL_KINDS:
                continue
            for row in touched(as_utc(created_at).date(), version):
                row.signals[kind] += 1

        versions = sorted(totals, key=_version_key) or [None]
        grid = [
            cells.get((first_day + timedelta(days=offset), version))
            or QualityRow(version, first_day + timedelta(days=offset))
            for offset in range(days)
            for version in versions
        ]
        return QualitySummary(
            tenant=tenant,
            first_day=first_day,
            last_day=last_day,
            days=grid,
            by_prompt_version=[totals[v] for v in sorted(totals, key=_version_key)],
        )

    async def _window(
        self, tenant: str, start: datetime, end: datetime
    ) -> tuple[list[tuple[datetime, dict[str, Any]]], list[tuple[datetime, str, str | None]]]:
        """The tenant's answers (time, the lineage fields the view needs) and quality events
        (time, kind, version) in ``[start, end)``; a rating superseded by a later one of the
        same user is dropped."""
        lineage = messages.c.lineage
        # Only the four lineage fields the view needs (SQLAlchemy renders json_extract on
        # SQLite and ->> on PostgreSQL): a lineage also holds sources and timings.
        answer_query = (
            select(
                messages.c.created_at,
                lineage["prompt_version"].as_string().label("prompt_version"),
                lineage["fallback"].as_string().label("fallback"),
                lineage["decision"].as_string().label("decision"),
                lineage["retrieval"].as_string().label("retrieval"),
            )
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(
                conversations.c.tenant == tenant,
                messages.c.role == "assistant",
                messages.c.created_at >= start,
                messages.c.created_at < end,
            )
        )
        event_query = (
            select(
                quality_events.c.created_at,
                quality_events.c.kind,
                quality_events.c.prompt_version,
                quality_events.c.user_id,
                quality_events.c.request_id,
            )
            .where(
                quality_events.c.tenant == tenant,
                quality_events.c.created_at >= start,
                quality_events.c.created_at < end,
            )
            .order_by(quality_events.c.created_at)
        )
        async with self._db.reading() as connection:
            answers = [
                (row.created_at, dict(row._mapping))
                for row in await connection.execute(answer_query)
            ]
            event_rows = list(await connection.execute(event_query))
        # ``record`` keeps one rating per user and answer; two ratings racing each other
        # could both land, and the newer one is what the user meant.
        newest_rating: dict[tuple[str, str], int] = {}
        for index, row in enumerate(event_rows):
            if row.kind in THUMBS:
                newest_rating[(row.user_id, row.request_id)] = index
        kept = set(newest_rating.values())
        events = [
            (row.created_at, row.kind, row.prompt_version)
            for index, row in enumerate(event_rows)
            if row.kind not in THUMBS or index in kept
        ]
        return answers, events
