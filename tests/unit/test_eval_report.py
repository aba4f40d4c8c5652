"""Score steps between evaluation runs, what changed across a step, and the report table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.stores.evals import EvalRun, Step, find_steps, run_document
from serving.ops.eval_cli import render_history, render_run

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def run(
    run_id: str,
    score: float,
    *,
    hours: int = 0,
    dataset: str = "handbook",
    tenant: str = "default",
    prompt: str = "prm_a",
    model: str = "smollm2",
    config: str = "cfg_1",
    cases: int = 20,
) -> EvalRun:
    started = T0 + timedelta(hours=hours)
    return EvalRun(
        id=run_id,
        dataset=dataset,
        tenant=tenant,
        started_at=started,
        finished_at=started + timedelta(minutes=3),
        prompt_version=prompt,
        model=model,
        config_version=config,
        cases=cases,
        passed=round(score * cases),
        score=score,
        details={"cases": {}, "notes": []},
    )


def test_a_drop_of_a_tenth_after_a_new_prompt_is_a_step_naming_the_prompt() -> None:
    steps = find_steps([run("r1", 0.9), run("r2", 0.8, hours=1, prompt="prm_b")])
    assert set(steps) == {"r2"}
    step = steps["r2"]
    assert step.previous_id == "r1"
    assert step.changed == ("prompt_version",)
    assert round(step.delta, 6) == -0.1
    assert step.describe() == "-0.10 after prompt_version changed"


def test_exactly_five_hundredths_is_a_step_and_less_is_not() -> None:
    # 0.75 - 0.7 is 0.04999... in floating point: still a step of 0.05.
    steps = find_steps([run("r1", 0.7), run("r2", 0.75, hours=1), run("r3", 0.79, hours=2)])
    assert set(steps) == {"r2"}
    assert steps["r2"].changed == ()
    assert steps["r2"].describe() == "+0.05, no version changed"


def test_steps_compare_each_run_with_the_previous_run_of_its_own_dataset_and_tenant() -> None:
    runs = [
        run("h1", 0.90, hours=0),
        run("s1", 0.50, hours=1, dataset="suites"),
        run("h2", 0.88, hours=2, model="llama"),
        run("o1", 0.10, hours=3, tenant="other"),
        run("s2", 0.75, hours=4, dataset="suites", config="cfg_2", model="llama"),
    ]
    steps = find_steps(reversed(runs))  # order of the input does not matter
    # h2 moved by 0.02 only; o1 is the first run of its tenant; s2 moved by 0.25 from s1.
    assert set(steps) == {"s2"}
    assert steps["s2"].previous_id == "s1"
    assert steps["s2"].changed == ("model", "config_version")


def test_every_version_that_changed_is_named() -> None:
    steps = find_steps(
        [
            run("r1", 1.0),
            run("r2", 0.4, hours=1, prompt="prm_b", model="llama", config="cfg_9"),
        ]
    )
    assert steps["r2"].changed == ("prompt_version", "model", "config_version")
    assert steps["r2"].as_dict()["direction"] == "down"


def test_the_report_table_marks_steps_and_shows_versions_newest_first() -> None:
    older = run("r1", 0.9)
    newer = run("r2", 0.7, hours=26, prompt="prm_b")
    table = render_history([(newer, find_steps([older, newer])["r2"]), (older, None)])
    header, first, second = table.splitlines()
    for column in ("time (UTC)", "dataset", "prompt_version", "model", "config_version"):
        assert column in header
    assert "tenant" not in header  # one tenant: no tenant column
    assert first.startswith("2026-11-21 11:00")
    assert "prm_b" in first
    assert "0.700" in first
    assert "14/20" in first
    assert "▼ -0.20 after prompt_version changed" in first
    assert second.startswith("2026-11-20 09:00")
    assert "▼" not in second
    assert "▲" not in second
    # Columns line up: every row starts its score at the same offset as the header.
    assert first.index("0.700") == second.index("0.900") == header.index("score")


def test_the_report_shows_the_tenant_when_runs_of_several_tenants_are_listed() -> None:
    table = render_history([(run("r2", 0.5, tenant="acme"), None), (run("r1", 0.5), None)])
    header, first, second = table.splitlines()
    assert "tenant" in header
    assert "acme" in first
    assert "default" in second


def test_an_empty_report_says_how_to_make_one() -> None:
    assert "enclave eval run" in render_history([])


def test_a_finished_run_lists_its_failed_cases_and_handbook_measures() -> None:
    finished = EvalRun(
        id="r9",
        dataset="handbook",
        tenant="default",
        started_at=T0,
        finished_at=T0,
        prompt_version="prm_a",
        model=None,
        config_version="cfg_1",
        cases=2,
        passed=1,
        score=0.5,
        details={
            "cases": {
                "q001": {"passed": True, "failures": []},
                "q002": {"passed": False, "failures": ["no relevant document cited"]},
            },
            "notes": ["model: 2 different values in the answers"],
            "mean_completion_tokens": 41.5,
            "degraded_share": 0.5,
            "fallback_share": 0.0,
        },
    )
    step = Step("r8", 1.0, -0.5, ("prompt_version",))
    text = render_run(finished, step)
    assert "failed q002: no relevant document cited" in text
    assert "q001" not in text
    assert "degraded retrieval 50%" in text
    assert "mean completion tokens 41.5" in text
    assert "▼ step: -0.50 after prompt_version changed (since r8)" in text
    assert "note: model: 2 different values" in text
    assert "0.500" in text.splitlines()[1]


def test_the_json_document_of_a_run_carries_versions_score_and_step() -> None:
    older, newer = run("r1", 0.5), run("r2", 0.9, hours=1, config="cfg_2")
    document = run_document(newer, find_steps([older, newer])["r2"])
    assert document["started_at"] == "2026-11-20T10:00:00Z"
    assert document["config_version"] == "cfg_2"
    assert document["score"] == 0.9
    assert document["step"]["changed"] == ["config_version"]
    assert document["step"]["direction"] == "up"
    assert document["step"]["previous_run"] == "r1"
