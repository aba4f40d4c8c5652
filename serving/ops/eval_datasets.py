"""The curated datasets ``enclave eval run`` asks the live stack, and how each case is judged.

* ``handbook``: the handbook QA set (``index/samples/handbook_eval.jsonl``); a case passes
  when one of its relevant documents is among the answer's sources (retrieval). Each answer
  is also judged (``serving.ops.eval_scoring``): hint correctness, citation correctness, whether
  it loops, and whether the answer or the quote of its best source states the hint; their
  shares are the run's ``figures``. Also measured: mean completion tokens, the share of
  answers cut for repetition, with degraded retrieval or from the fallback engine. A slice
  (``tuning`` or ``held-back``) may be asked instead of the whole set.
* ``suites``: every prompt regression suite (``prompts/suites/*.yaml``), each case checked
  by ``core.prompts.check_case``.

Every request is reproducible: temperature 0, seed 7, a small answer budget. What a run
keeps is ids, counts, versions and failure reasons, never question or answer text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from api.stores.evals import VERSION_FIELDS, EvalRun, new_run_id
from core.errors import InvalidRequest
from serving.ops.eval_scoring import cites_relevant, held_back, loops, states_hint

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.chat import ChatCompletionMessageParam

__all__ = [
    "DATASETS",
    "MAX_TOKENS",
    "SEED",
    "SLICES",
    "Answer",
    "AskFailed",
    "Asker",
    "CaseResult",
    "DatasetRun",
    "EvalAborted",
    "HandbookCase",
    "OpenAIAsker",
    "dominant_versions",
    "judge_answer",
    "load_handbook",
    "run_handbook",
    "run_suites",
]

DATASETS = ("handbook", "suites")
SLICES = ("all", "tuning", "held-back")
SEED = 7
MAX_TOKENS = 96
# A failure reason is a short verdict. ``check_case`` quotes the answer for people reading
# a failed test (" (answer: '...')"); the store keeps no answer text, so the quote is cut,
# and so is anything past the length of a verdict.
_ANSWER_QUOTE = " (answer: "
_MAX_FAILURE_CHARS = 200

Progress = Callable[[str, int, int], None]


class AskFailed(Exception):
    """The stack gave no answer to one case (an HTTP error, a timeout)."""


class EvalAborted(Exception):
    """No case of a dataset got an answer: the stack is down or refuses the key."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one case, with the response's ``enclave`` lineage."""

    text: str
    lineage: Mapping[str, Any]
    completion_tokens: int


class Asker(Protocol):
    """Something that asks the live stack one chat."""

    def ask(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        knowledge_base: str | None,
        max_tokens: int,
    ) -> Answer:
        """The answer; raises :class:`AskFailed` when there is none."""
        ...


class OpenAIAsker:
    """Asks through the real ``openai`` client, as any OpenAI-compatible tool would."""

    def __init__(self, client: OpenAI, model: str) -> None:
        self._client = client
        self._model = model

    def ask(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        knowledge_base: str | None,
        max_tokens: int,
    ) -> Answer:
        """One non-streamed completion: temperature 0, seed 7."""
        import openai

        extra_body = {"knowledge_base": knowledge_base} if knowledge_base else None
        try:
            completion = self._client.chat.completions.create(
                model=self._model,
                # Suites hold plain {role, content} dicts, which is what these TypedDicts are.
                messages=cast("list[ChatCompletionMessageParam]", [dict(m) for m in messages]),
                temperature=0,
                seed=SEED,
                max_tokens=max_tokens,
                extra_body=extra_body,
            )
        except openai.APIStatusError as exc:
            msg = f"HTTP {exc.status_code} (request id {exc.request_id or '-'})"
            raise AskFailed(msg) from exc
        except openai.APIError as exc:  # connection refused, timeout
            msg = f"no response: {type(exc).__name__}"
            raise AskFailed(msg) from exc
        lineage = (completion.model_extra or {}).get("enclave") or {}
        text = completion.choices[0].message.content if completion.choices else None
        tokens = completion.usage.completion_tokens if completion.usage else 0
        return Answer(text or "", lineage, tokens)


@dataclass(frozen=True, slots=True)
class CaseResult:
    """How one case went; ``lineage`` is None when the stack gave no answer."""

    case_id: str
    passed: bool
    failures: tuple[str, ...]
    lineage: Mapping[str, Any] | None = None
    completion_tokens: int = 0
    judged: Mapping[str, bool] = field(default_factory=dict)
    """How the answer was judged (handbook: hint, citation, loop, answer_or_quote)."""


@dataclass(slots=True)
class DatasetRun:
    """The results of one dataset, before they are stored."""

    dataset: str
    started_at: datetime
    finished_at: datetime
    results: list[CaseResult]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> int:
        """Cases that passed."""
        return sum(1 for r in self.results if r.passed)

    @property
    def score(self) -> float:
        """The pass rate."""
        return self.passed / len(self.results) if self.results else 0.0

    def failed(self) -> list[CaseResult]:
        """The cases that failed, in order."""
        return [r for r in self.results if not r.passed]

    def to_eval_run(self, tenant: str) -> EvalRun:
        """The row ``eval_runs`` keeps: the most common versions, per-case verdicts by id."""
        lineages = [r.lineage for r in self.results if r.lineage is not None]
        versions, notes, seen = dominant_versions(lineages)
        details: dict[str, Any] = {
            "cases": {
                r.case_id: {"passed": r.passed, "failures": list(r.failures), **r.judged}
                for r in self.results
            },
            "notes": notes,
            **self.metrics,
        }
        if seen:
            details["versions_seen"] = seen
        return EvalRun(
            id=new_run_id(),
            dataset=self.dataset,
            tenant=tenant,
            started_at=self.started_at,
            finished_at=self.finished_at,
            prompt_version=versions["prompt_version"],
            model=versions["model"],
            config_version=versions["config_version"],
            cases=len(self.results),
            passed=self.passed,
            score=self.score,
            details=details,
        )


def dominant_versions(
    lineages: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, str | None], list[str], dict[str, dict[str, int]]]:
    """Per version field: the most common value among the answers, notes on fields where
    answers differed (a canary cohort, an activation during the run), and those counts."""
    versions: dict[str, str | None] = {}
    notes: list[str] = []
    seen: dict[str, dict[str, int]] = {}
    for name in VERSION_FIELDS:
        counts = Counter(str(lineage[name]) for lineage in lineages if lineage.get(name))
        if not counts:
            versions[name] = None
            continue
        value, count = counts.most_common(1)[0]
        versions[name] = value
        if len(counts) > 1:
            total = sum(counts.values())
            notes.append(
                f"{name}: {len(counts)} different values in the answers; recorded the most "
                f"common, {value} ({count} of {total})"
            )
            seen[name] = dict(counts)
    return versions, notes, seen


def _finish(dataset: str, started: datetime, results: list[CaseResult]) -> DatasetRun:
    if results and all(r.lineage is None for r in results):
        reasons = sorted({f for r in results for f in r.failures})
        msg = f"No {dataset} case got an answer ({'; '.join(reasons)}); nothing recorded."
        raise EvalAborted(msg)
    return DatasetRun(dataset, started, datetime.now(UTC), results)


@dataclass(frozen=True, slots=True)
class HandbookCase:
    """A handbook question and the documents that answer it."""

    id: str
    question: str
    relevant: tuple[str, ...]
    hint: str = ""
    """The fact a correct answer states (``answer_hint``); empty: not judged."""


def load_handbook(
    path: Path, *, limit: int | None = None, slice_: str = "all"
) -> list[HandbookCase]:
    """The first ``limit`` cases of a handbook QA file (JSON lines: id, question, relevant,
    answer_hint), of the whole set or of one slice (``tuning``, ``held-back``)."""
    if slice_ not in SLICES:
        msg = f"Unknown slice {slice_!r}; use one of: {', '.join(SLICES)}."
        raise InvalidRequest(msg)
    cases: list[HandbookCase] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            case = HandbookCase(
                str(record["id"]),
                str(record["question"]),
                tuple(record["relevant"]),
                str(record.get("answer_hint") or ""),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            msg = f"{path}:{number}: expected JSON with id, question and relevant ({exc})."
            raise InvalidRequest(msg) from exc
        if slice_ != "all" and held_back(case.id) != (slice_ == "held-back"):
            continue
        cases.append(case)
        if limit is not None and len(cases) >= limit:
            break
    if not cases:
        msg = f"{path} holds no cases."
        raise InvalidRequest(msg)
    return cases


def _share(flags: Sequence[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def run_handbook(
    asker: Asker,
    cases: Sequence[HandbookCase],
    *,
    knowledge_base: str,
    max_tokens: int = MAX_TOKENS,
    progress: Progress | None = None,
) -> DatasetRun:
    """Ask each question; a case passes when a relevant document is among the sources."""
    started = datetime.now(UTC)
    results: list[CaseResult] = []
    for number, case in enumerate(cases, start=1):
        messages = [{"role": "user", "content": case.question}]
        try:
            answer = asker.ask(messages, knowledge_base=knowledge_base, max_tokens=max_tokens)
        except AskFailed as exc:
            results.append(CaseResult(case.id, passed=False, failures=(str(exc),)))
        else:
            sources = answer.lineage.get("sources") or []
            cited = [str(s.get("document_id")) for s in sources]
            passed = any(doc in cited for doc in case.relevant)
            failures = () if passed else (_not_cited(case.relevant, cited),)
            results.append(
                CaseResult(
                    case.id,
                    passed,
                    failures,
                    answer.lineage,
                    answer.completion_tokens,
                    judge_answer(case, answer.text, sources),
                )
            )
        if progress is not None:
            progress("handbook", number, len(cases))
    run = _finish("handbook", started, results)
    answered = [r.lineage for r in results if r.lineage is not None]
    tokens = [r.completion_tokens for r in results if r.lineage is not None]
    run.metrics = {
        "knowledge_base": knowledge_base,
        "mean_completion_tokens": round(sum(tokens) / len(tokens), 2) if tokens else 0.0,
        "degraded_share": _share([lineage.get("retrieval") == "degraded" for lineage in answered]),
        "fallback_share": _share([bool(lineage.get("fallback")) for lineage in answered]),
        "cut_for_repetition_share": _share(
            [
                bool((lineage.get("guard") or {}).get("reply_cut_for_repetition"))
                for lineage in answered
            ]
        ),
        "unanswered": len(results) - len(answered),
        "figures": _figures([r.judged for r in results if r.lineage is not None and r.judged]),
    }
    return run


def judge_answer(
    case: HandbookCase, text: str, sources: Sequence[Mapping[str, Any]]
) -> dict[str, bool]:
    """One handbook answer judged: hint, citation, loop, and answer-or-quote (the answer or
    the quote of its best source states the hint)."""
    judged = {"citation": cites_relevant(text, sources, case.relevant), "loop": loops(text)}
    if case.hint:
        quote = str(sources[0].get("quote") or "") if sources else ""
        hint = states_hint(text, case.hint)
        judged["hint"] = hint
        judged["answer_or_quote"] = hint or (bool(quote) and states_hint(quote, case.hint))
    return judged


def _figures(judged: Sequence[Mapping[str, bool]]) -> dict[str, float]:
    """The run's answer figures: shares over the answered cases that were judged."""
    names = {
        "hint_correctness": "hint",
        "citation_correctness": "citation",
        "loop_rate": "loop",
        "answer_or_quote_correctness": "answer_or_quote",
    }
    figures: dict[str, float] = {}
    for figure, key in names.items():
        flags = [j[key] for j in judged if key in j]
        if flags:
            figures[figure] = _share(flags)
    return figures


def _not_cited(relevant: Sequence[str], cited: Sequence[str]) -> str:
    found = ", ".join(dict.fromkeys(cited)) or "none"
    return f"no relevant document cited (expected one of {', '.join(relevant)}; cited: {found})"


def _verdict(failure: str) -> str:
    return failure.split(_ANSWER_QUOTE, 1)[0][:_MAX_FAILURE_CHARS]


def run_suites(
    asker: Asker,
    suites_dir: Path,
    *,
    limit: int | None = None,
    progress: Progress | None = None,
) -> DatasetRun:
    """Ask every case of every prompt suite and check its expected properties."""
    from core.prompts import check_case, load_suites

    suites = load_suites(suites_dir)
    cases = [(suite.name, case) for suite in suites for case in suite.cases]
    if limit is not None:
        cases = cases[:limit]
    if not cases:
        msg = f"No prompt suite cases under {suites_dir}."
        raise InvalidRequest(msg)
    started = datetime.now(UTC)
    results: list[CaseResult] = []
    for number, (suite_name, case) in enumerate(cases, start=1):
        case_id = f"{suite_name}/{case.id}"
        try:
            answer = asker.ask(
                case.messages, knowledge_base=case.knowledge_base, max_tokens=case.max_tokens
            )
        except AskFailed as exc:
            results.append(CaseResult(case_id, passed=False, failures=(str(exc),)))
        else:
            outcome = check_case(case, answer.text, answer.lineage, answer.completion_tokens)
            failures = tuple(_verdict(f) for f in outcome.failures)
            results.append(
                CaseResult(
                    case_id, outcome.passed, failures, answer.lineage, answer.completion_tokens
                )
            )
        if progress is not None:
            progress("suites", number, len(cases))
    run = _finish("suites", started, results)
    run.metrics = {"suites": sorted({name for name, _ in cases})}
    return run
