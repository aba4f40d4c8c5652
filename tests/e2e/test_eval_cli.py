"""`enclave eval` against the running stack: datasets asked over HTTP, runs stored in the
stack's database, read back by `enclave eval report` and `GET /v1/evals`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.e2e.stack import GUARD_DIR, ROOT, RunningStack

pytestmark = pytest.mark.e2e

# Measured on the embedded SmolLM2-135M, temperature 0, neutral decoding, these 12 cases
# (`enclave eval run --dataset handbook --limit 12`, 2026-12-03 evening, models/README.md):
# hint correctness 0.25 (3/12), answer-or-quote 0.75 (9/12; 0.50 before the quote chose its
# source among the retrieved passages), citation 0.00. Floors: one case fewer than
# measured. Citation has no floor: the embedded model writes no valid [n] marker (0 on every
# slice measured), so a floor above 0 cannot hold and 0 proves nothing.
HINT_FLOOR = 0.16
ANSWER_OR_QUOTE_FLOOR = 0.66

ENCLAVE = [sys.executable, "-m", "serving.ops.cli"]


def _enclave_eval(
    stack: RunningStack, api_key: str, *argv: str
) -> subprocess.CompletedProcess[str]:
    """Run `enclave eval ...` as an operator on the stack's host would: same settings and
    data dir (so the same database), the key in the environment."""
    environment = {
        **os.environ,
        "ENCLAVE_PROFILE": "test",
        "ENCLAVE_CONFIG_DIR": str(ROOT),
        "ENCLAVE_PATHS__DATA_DIR": str(stack.data_dir),
        "ENCLAVE_EVAL_API_KEY": api_key,
        # The command runs under the same egress guard as the stack.
        "PYTHONPATH": os.pathsep.join([str(GUARD_DIR), str(ROOT)]),
    }
    return subprocess.run(
        [*ENCLAVE, "eval", *argv],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _check_versions(run: dict[str, Any]) -> None:
    assert run["prompt_version"], run
    assert run["config_version"], run
    assert run["model"], run


def test_enclave_eval_runs_the_datasets_and_the_scores_are_stored(
    stack: RunningStack, api_keys: dict[str, str]
) -> None:
    key = api_keys["tenant_admin"]
    done = _enclave_eval(
        stack,
        key,
        "run",
        "--dataset",
        "suites",
        "--dataset",
        "handbook",
        "--limit",
        "12",
        "--base-url",
        stack.base_url,
        "--min-score",
        "0.7",
        # The loop guard cuts every loop before the user sees it: none may reach an answer.
        "--max-loop-rate",
        "0",
        # Floors from the measured figures of these 12 cases (see HINT_FLOOR): a prompt,
        # decoding or model change that makes the answers worse fails here.
        "--min-hint",
        str(HINT_FLOOR),
        "--min-answer-or-quote",
        str(ANSWER_OR_QUOTE_FLOOR),
        "--json",
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    runs = {run["dataset"]: run for run in json.loads(done.stdout)}
    assert set(runs) == {"suites", "handbook"}
    for run in runs.values():
        assert run["tenant"] == "default"
        assert 0.0 <= run["score"] <= 1.0
        assert 1 <= run["cases"] <= 12
        assert run["passed"] == sum(c["passed"] for c in run["details"]["cases"].values())
        _check_versions(run)
    handbook = runs["handbook"]
    assert handbook["cases"] == 12
    assert handbook["score"] >= 0.7, json.dumps(handbook["details"], indent=2)
    assert handbook["details"]["degraded_share"] == 0.0
    assert 0 < handbook["details"]["mean_completion_tokens"] <= 96
    # The answers themselves are measured, and stored beside the retrieval score.
    figures = handbook["figures"]
    print(f"\nhandbook figures over 12 cases: {figures}")
    assert set(figures) == {
        "hint_correctness",
        "citation_correctness",
        "loop_rate",
        "answer_or_quote_correctness",
    }
    assert figures["loop_rate"] == 0.0, json.dumps(handbook["details"]["cases"], indent=2)
    assert figures["hint_correctness"] >= HINT_FLOOR, figures
    assert figures["answer_or_quote_correctness"] >= ANSWER_OR_QUOTE_FLOOR, figures
    # The best source of each grounded answer carries its quote, so the answer-or-quote
    # figure is never below the answer's own.
    assert figures["answer_or_quote_correctness"] >= figures["hint_correctness"]
    # Exit 1 exactly when a suite case failed (the handbook met --min-score above).
    suites = runs["suites"]
    assert done.returncode == (1 if suites["passed"] < suites["cases"] else 0), suites["details"]
    stored_text = done.stdout
    assert key not in stored_text
    assert "How much RAM" not in stored_text  # ids only, no question text

    report = _enclave_eval(stack, key, "report", "--json", "--last", "20")
    assert report.returncode == 0, report.stderr[-3000:]
    reported = {run["id"]: run for run in json.loads(report.stdout)}
    for run in runs.values():
        assert reported[run["id"]]["score"] == run["score"]
        _check_versions(reported[run["id"]])

    table = _enclave_eval(stack, key, "report", "--dataset", "handbook")
    assert table.returncode == 0, table.stderr[-3000:]
    assert handbook["prompt_version"] in table.stdout
    assert f"{handbook['passed']}/12" in table.stdout

    response = httpx.get(
        f"{stack.base_url}/v1/evals",
        params={"limit": 50},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    listed = response.json()["data"]
    assert {run["id"] for run in runs.values()} <= {run["id"] for run in listed}
    started = [run["started_at"] for run in listed]
    assert started == sorted(started, reverse=True)  # newest first
    assert all(run["tenant"] == "default" for run in listed)

    staff = httpx.get(
        f"{stack.base_url}/v1/evals",
        headers={"Authorization": f"Bearer {api_keys['staff']}"},
        timeout=30,
    )
    assert staff.status_code == 403
