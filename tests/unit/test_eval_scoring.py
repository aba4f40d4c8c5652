"""How handbook answers are judged: the hint's fact, the citation, loops; the held-back
slice; the figures a run stores, their floors and their steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.stores.evals import EvalRun, find_steps
from serving.ops.eval_cli import render_history, render_run
from serving.ops.eval_datasets import Answer, HandbookCase, load_handbook, run_handbook
from serving.ops.eval_scoring import cites_relevant, held_back, loops, states_hint
from tests.unit.test_eval_run import ROOT


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ("Data scientists get a laptop with 36GB of memory [1].", "36 GB"),
        ("You get a new laptop every four years.", "4 years"),
        ("A card limit of €5000 applies.", "€5,000"),
        ("Your device is not compliant with the policy.", "not compliant"),
        ("The tool says the device isn't compliant.", "not compliant"),
        ("Enrolment runs from 1 to 30 November.", "1 to 30 November"),
        ("Core hours: 10:00 to 16:00.", "10:00 to 16:00"),
        (
            "The three levels are Confidential, Internal and Public.",
            "Public, Internal, Confidential",
        ),
    ],
)
def test_an_answer_that_states_the_hint_counts(answer: str, hint: str) -> None:
    assert states_hint(answer, hint)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ("Data scientists get 32 GB of RAM.", "36 GB"),  # numbers must match
        ("You get a new laptop every 3 years.", "4 years"),
        ("Your device is compliant.", "not compliant"),  # a negation is part of the fact
        ("The levels are Public and Internal.", "Public, Internal, Confidential"),
        ("Core hours start at 10 in the morning.", "10:00 to 16:00"),
        ("", "36 GB"),
    ],
)
def test_an_answer_that_misses_or_contradicts_the_hint_does_not(answer: str, hint: str) -> None:
    assert not states_hint(answer, hint)


SOURCES = [
    {"number": 1, "document_id": "it-vpn"},
    {"number": 2, "document_id": "it-laptop-setup"},
]


def test_a_citation_counts_when_a_marker_points_at_a_relevant_document() -> None:
    assert cites_relevant("Use NWConnect [1].", SOURCES, ["it-vpn"])
    assert cites_relevant("Use NWConnect [2][1].", SOURCES, ["it-vpn"])
    assert not cites_relevant("Use NWConnect [2].", SOURCES, ["it-vpn"])  # wrong document
    assert not cites_relevant("Use NWConnect.", SOURCES, ["it-vpn"])  # no marker
    assert not cites_relevant("Use NWConnect [1][3].", SOURCES, ["it-vpn"])  # [3]: no source


def test_a_loop_is_six_words_three_times() -> None:
    assert loops("Ask IT for help right now. " * 3)
    assert not loops("Ask IT for help today. Ask IT for help today.")


def test_every_fifth_case_is_held_back() -> None:
    cases = load_handbook(ROOT / "index" / "samples" / "handbook_eval.jsonl")
    held = load_handbook(ROOT / "index" / "samples" / "handbook_eval.jsonl", slice_="held-back")
    tuning = load_handbook(ROOT / "index" / "samples" / "handbook_eval.jsonl", slice_="tuning")
    assert [c.id for c in held][:3] == ["q005", "q010", "q015"]
    assert len(held) == 27
    assert len(held) + len(tuning) == len(cases) == 135
    assert not {c.id for c in held} & {c.id for c in tuning}
    assert all(c.hint for c in cases)
    assert held_back("q135")
    assert not held_back("q134")


class ScriptedAsker:
    """Answers each question with a scripted text and sources (with an optional quote)."""

    def __init__(self, answers: Mapping[str, tuple[str, list[dict[str, Any]]]]) -> None:
        self.answers = answers

    def ask(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        knowledge_base: str | None,
        max_tokens: int,
    ) -> Answer:
        text, sources = self.answers[messages[-1]["content"]]
        lineage = {"sources": sources, "model": "m", "guard": {}}
        return Answer(text, lineage, 10)


def test_a_handbook_run_stores_the_answer_figures_per_case_and_overall() -> None:
    vpn = [{"number": 1, "document_id": "it-vpn"}]
    laptop = [{"number": 1, "document_id": "it-laptop-setup", "quote": "The laptop has 36 GB."}]
    cases = [
        HandbookCase("q1", "VPN?", ("it-vpn",), "NWConnect"),
        HandbookCase("q2", "RAM?", ("it-laptop-setup",), "36 GB"),
        HandbookCase("q3", "Years?", ("it-laptop-setup",), "4 years"),
    ]
    asker = ScriptedAsker(
        {
            "VPN?": ("Connect to NWConnect first [1].", vpn),
            # Wrong number, and loops: the quote of the best source still has the fact.
            "RAM?": ("It has 32 GB. " + "It has a lot of memory. " * 3, laptop),
            "Years?": ("Every 3 years [2].", laptop),
        }
    )
    run = run_handbook(asker, cases, knowledge_base="handbook")
    figures = run.metrics["figures"]
    assert figures == {
        "hint_correctness": round(1 / 3, 4),
        "citation_correctness": round(1 / 3, 4),
        "loop_rate": round(1 / 3, 4),
        "answer_or_quote_correctness": round(2 / 3, 4),
    }
    stored = run.to_eval_run("acme")
    assert stored.figures() == figures
    assert stored.details["cases"]["q2"] == {
        "passed": True,
        "failures": [],
        "citation": False,
        "loop": True,
        "hint": False,
        "answer_or_quote": True,
    }
    shown = render_run(stored, None)
    assert "hint_correctness 0.333" in shown
    assert "answer_or_quote_correctness 0.667" in shown


T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _run(run_id: str, hours: int, config: str, figures: dict[str, float]) -> EvalRun:
    return EvalRun(
        id=run_id,
        dataset="handbook:held-back",
        tenant="default",
        started_at=T0 + timedelta(hours=hours),
        finished_at=T0 + timedelta(hours=hours, minutes=3),
        prompt_version="prm_a",
        model="smollm2",
        config_version=config,
        cases=27,
        passed=27,
        score=1.0,
        details={"cases": {}, "notes": [], "figures": figures},
    )


def test_a_figure_that_moves_makes_a_step_naming_it_even_when_the_score_stays() -> None:
    before = _run("r1", 0, "cfg_1", {"hint_correctness": 0.2, "loop_rate": 0.8})
    after = _run("r2", 1, "cfg_2", {"hint_correctness": 0.22, "loop_rate": 0.0})
    steps = find_steps([before, after])
    step = steps["r2"]
    assert step.figures == {"loop_rate": pytest.approx(-0.8)}
    assert step.describe() == "+0.00 after config_version changed; loop_rate -0.80"
    table = render_history([(after, step), (before, None)])
    assert "loops" in table.splitlines()[0]
    assert "0.00" in table.splitlines()[1]
    assert "0.80" in table.splitlines()[2]
