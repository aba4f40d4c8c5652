"""Evaluation runs over time: storing them, reading them back, and spotting score steps.

``enclave eval run`` records one row per dataset run (``eval_runs``); ``enclave eval report``
and ``GET /v1/evals`` read them back, newest first, each with the step it made: a score that
moved by at least :data:`STEP_THRESHOLD` from the previous run of the same dataset (in the
same tenant), and which of the prompt, model and config versions changed between the two.
A step with no version change points at something else (the knowledge base, the dataset).
Besides the score (the share of cases that passed), a run may carry answer figures in its
details (``details["figures"]``: :data:`FIGURES`, e.g. hint correctness and loop rate of the
handbook set); a figure that moved by the threshold makes a step too.
Rows hold ids, counts and scores only, never question or answer text.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.engine import RowMapping

from core.db import Database, as_utc, eval_runs
from core.errors import InvalidRequest

__all__ = [
    "FIGURES",
    "MAX_LIMIT",
    "STEP_THRESHOLD",
    "VERSION_FIELDS",
    "EvalRun",
    "EvalStore",
    "Step",
    "find_steps",
    "new_run_id",
    "run_document",
]

STEP_THRESHOLD = 0.05
VERSION_FIELDS = ("prompt_version", "model", "config_version")
MAX_LIMIT = 500
FIGURES = (
    "hint_correctness",
    "citation_correctness",
    "loop_rate",
    "answer_or_quote_correctness",
)
"""Answer figures a handbook run stores beside its score, each a share between 0 and 1."""
# Scores are ratios of small integers: 0.75 - 0.7 is 0.04999..., which is a step of 0.05.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class EvalRun:
    """One run of one dataset against the live stack."""

    id: str
    dataset: str
    tenant: str
    started_at: datetime
    finished_at: datetime
    prompt_version: str | None
    model: str | None
    config_version: str | None
    cases: int
    passed: int
    score: float
    details: dict[str, Any] = field(default_factory=dict)

    def versions(self) -> dict[str, str | None]:
        """The prompt, model and config versions the run's answers reported."""
        return {name: getattr(self, name) for name in VERSION_FIELDS}

    def figures(self) -> dict[str, float]:
        """The answer figures the run measured (none for datasets that measure none)."""
        stored = self.details.get("figures") or {}
        return {name: float(stored[name]) for name in FIGURES if stored.get(name) is not None}


@dataclass(frozen=True, slots=True)
class Step:
    """A run's score moved by at least the threshold from the previous run of its dataset."""

    previous_id: str
    previous_score: float
    delta: float
    changed: tuple[str, ...]
    figures: dict[str, float] = field(default_factory=dict)
    """Answer figures that moved by the threshold, with how much (e.g. loop_rate -0.4)."""

    def describe(self) -> str:
        """E.g. ``-0.20 after prompt_version changed`` or ``+0.10, no version changed``;
        moved figures follow (``…; loop_rate -0.40``)."""
        moved = "".join(f"; {name} {delta:+.2f}" for name, delta in self.figures.items())
        if self.changed:
            return f"{self.delta:+.2f} after {', '.join(self.changed)} changed{moved}"
        return f"{self.delta:+.2f}, no version changed{moved}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "previous_run": self.previous_id,
            "previous_score": self.previous_score,
            "delta": round(self.delta, 6),
            "direction": "up" if self.delta > 0 else "down",
            "changed": list(self.changed),
            "figures": {name: round(delta, 6) for name, delta in self.figures.items()},
            "summary": self.describe(),
        }


def new_run_id() -> str:
    """A fresh run id."""
    return f"evr_{secrets.token_hex(12)}"


def _order_key(run: EvalRun) -> tuple[datetime, str]:
    return (as_utc(run.started_at), run.id)


def _step_between(previous: EvalRun, run: EvalRun, threshold: float) -> Step | None:
    delta = run.score - previous.score
    before, after = previous.figures(), run.figures()
    figures = {
        name: after[name] - before[name]
        for name in FIGURES
        if name in before
        and name in after
        and abs(after[name] - before[name]) >= threshold - _EPSILON
    }
    if abs(delta) < threshold - _EPSILON and not figures:
        return None
    changed = tuple(
        name for name in VERSION_FIELDS if getattr(previous, name) != getattr(run, name)
    )
    return Step(previous.id, previous.score, delta, changed, figures)


def find_steps(runs: Iterable[EvalRun], *, threshold: float = STEP_THRESHOLD) -> dict[str, Step]:
    """The steps among ``runs`` (any order), by run id: each run compared with the run of
    the same tenant and dataset right before it. The oldest run of each series has none."""
    series: dict[tuple[str, str], list[EvalRun]] = {}
    for run in runs:
        series.setdefault((run.tenant, run.dataset), []).append(run)
    steps: dict[str, Step] = {}
    for members in series.values():
        ordered = sorted(members, key=_order_key)
        for previous, run in pairwise(ordered):
            step = _step_between(previous, run, threshold)
            if step is not None:
                steps[run.id] = step
    return steps


def _iso(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")


def run_document(run: EvalRun, step: Step | None) -> dict[str, Any]:
    """A run as ``GET /v1/evals`` and ``enclave eval report --json`` show it."""
    return {
        "id": run.id,
        "dataset": run.dataset,
        "tenant": run.tenant,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        **run.versions(),
        "cases": run.cases,
        "passed": run.passed,
        "score": run.score,
        "figures": run.figures(),
        "step": None if step is None else step.as_dict(),
        "details": run.details,
    }


def _from_row(row: RowMapping) -> EvalRun:
    return EvalRun(
        id=row["id"],
        dataset=row["dataset"],
        tenant=row["tenant"],
        started_at=as_utc(row["started_at"]),
        finished_at=as_utc(row["finished_at"]),
        prompt_version=row["prompt_version"],
        model=row["model"],
        config_version=row["config_version"],
        cases=row["cases"],
        passed=row["passed"],
        score=row["score"],
        details=dict(row["details"] or {}),
    )


class EvalStore:
    """The ``eval_runs`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, run: EvalRun) -> None:
        """Store a finished run."""
        if not 0.0 <= run.score <= 1.0:
            msg = f"A score is a share between 0 and 1, got {run.score}."
            raise InvalidRequest(msg)
        async with self._db.transaction() as connection:
            await connection.execute(
                insert(eval_runs).values(
                    id=run.id,
                    dataset=run.dataset,
                    tenant=run.tenant,
                    started_at=as_utc(run.started_at),
                    finished_at=as_utc(run.finished_at),
                    prompt_version=run.prompt_version,
                    model=run.model,
                    config_version=run.config_version,
                    cases=run.cases,
                    passed=run.passed,
                    score=run.score,
                    details=run.details,
                )
            )

    async def list_runs(
        self, *, tenant: str | None, dataset: str | None = None, limit: int = 20
    ) -> list[EvalRun]:
        """The latest ``limit`` runs, newest first; ``tenant`` None: every tenant's."""
        if not 1 <= limit <= MAX_LIMIT:
            msg = f"limit must be between 1 and {MAX_LIMIT}, got {limit}."
            raise InvalidRequest(msg)
        query = select(eval_runs)
        if tenant is not None:
            query = query.where(eval_runs.c.tenant == tenant)
        if dataset is not None:
            query = query.where(eval_runs.c.dataset == dataset)
        query = query.order_by(eval_runs.c.started_at.desc(), eval_runs.c.id.desc()).limit(limit)
        async with self._db.reading() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [_from_row(row) for row in rows]

    async def _run_before(self, run: EvalRun) -> EvalRun | None:
        started = as_utc(run.started_at)
        query = (
            select(eval_runs)
            .where(
                eval_runs.c.tenant == run.tenant,
                eval_runs.c.dataset == run.dataset,
                or_(
                    eval_runs.c.started_at < started,
                    and_(eval_runs.c.started_at == started, eval_runs.c.id < run.id),
                ),
            )
            .order_by(eval_runs.c.started_at.desc(), eval_runs.c.id.desc())
            .limit(1)
        )
        async with self._db.reading() as connection:
            row = (await connection.execute(query)).mappings().first()
        return None if row is None else _from_row(row)

    async def history(
        self, *, tenant: str | None, dataset: str | None = None, limit: int = 20
    ) -> list[tuple[EvalRun, Step | None]]:
        """The latest runs, newest first, each with its step (if it made one).

        The oldest shown run of each series is compared with its predecessor too, which may
        lie outside the page.
        """
        runs = await self.list_runs(tenant=tenant, dataset=dataset, limit=limit)
        oldest: dict[tuple[str, str], EvalRun] = {}
        for run in runs:  # newest first: the last one seen per series is its oldest
            oldest[(run.tenant, run.dataset)] = run
        earlier = [await self._run_before(run) for run in oldest.values()]
        steps = find_steps([*runs, *(run for run in earlier if run is not None)])
        return [(run, steps.get(run.id)) for run in runs]
