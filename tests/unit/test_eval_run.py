"""``enclave eval run`` and ``report`` against a fake OpenAI-compatible API (``http.server``
on 127.0.0.1, so the real ``openai`` client does the talking) and a SQLite store."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.db import upgrade
from core.settings import Settings, load_settings
from serving.ops.eval_cli import API_KEY_ENV, add_eval_commands
from serving.ops.eval_datasets import (
    Answer,
    AskFailed,
    EvalAborted,
    dominant_versions,
    run_handbook,
)
from serving.ops.eval_datasets import HandbookCase as Case

ROOT = Path(__file__).resolve().parents[2]
KEY = "enc_0123456789abcdef.eval-key-for-tests-only-not-real-00000000000"

CASES = [
    {"id": "q1", "question": "How do I set up the VPN?", "relevant": ["it-vpn"]},
    {"id": "q2", "question": "What laptop RAM do we get?", "relevant": ["it-laptop-setup"]},
    {"id": "q3", "question": "How long is parental leave?", "relevant": ["hr-parental-leave"]},
    {"id": "q4", "question": "Where is the guest wifi password?", "relevant": ["it-guest-wifi"]},
]


@dataclass
class FakeStack:
    """Cites the document named by a keyword of the question; ``wrong`` keywords cite
    another document. Records every chat request body."""

    prompt_versions: list[str] = field(default_factory=lambda: ["prm_a"])
    wrong: set[str] = field(default_factory=lambda: {"wifi"})
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def sources(self, question: str) -> list[str]:
        for word, doc in (
            ("VPN", "it-vpn"),
            ("laptop", "it-laptop-setup"),
            ("leave", "hr-parental-leave"),
            ("wifi", "it-guest-wifi"),
        ):
            if word in question:
                return ["hr-expenses"] if word in self.wrong else [doc]
        return []


class _Handler(BaseHTTPRequestHandler):
    stack: FakeStack

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.headers.get("authorization") != f"Bearer {KEY}":
            self._json(401, {"title": "Unauthenticated"})
        elif self.path == "/v1/me":
            self._json(200, {"tenant": "acme", "roles": ["staff"]})
        elif self.path == "/v1/models":
            card = {"id": "smollm2", "object": "model", "created": 0, "owned_by": "enclave"}
            self._json(200, {"object": "list", "data": [card]})
        else:
            self._json(404, {"title": "Not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        stack = self.stack
        stack.bodies.append(body)
        number = len(stack.bodies)
        question = body["messages"][-1]["content"]
        docs = stack.sources(question)
        lineage = {
            "model": body["model"],
            "prompt_version": stack.prompt_versions[(number - 1) % len(stack.prompt_versions)],
            "config_version": "cfg_1",
            "retrieval": "ok" if docs else "degraded",
            "fallback": "primary timed out" if number == 1 else None,
            "sources": [{"number": 1, "document_id": d} for d in docs],
        }
        self._json(
            200,
            {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "An answer [1]."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 20, "completion_tokens": 10 * number, "total_tokens": 0},
                "enclave": lineage,
            },
        )


@pytest.fixture
def stack() -> Iterator[tuple[FakeStack, str]]:
    state = FakeStack()
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Handler,), {"stack": state}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    loaded = load_settings(config_dir=ROOT, profile="test")
    settings = loaded.model_copy(
        update={"paths": loaded.paths.model_copy(update={"data_dir": tmp_path / "data"})}
    )
    upgrade(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'enclave.db'}")
    return settings


@pytest.fixture
def handbook(tmp_path: Path) -> Path:
    path = tmp_path / "handbook_eval.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in CASES) + "\n", encoding="utf-8")
    return path


def enclave_eval(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="enclave")
    add_eval_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *argv])
    return int(args.handler(settings, args))


def test_a_handbook_run_is_scored_by_cited_sources_and_stored_without_text(
    stack: tuple[FakeStack, str],
    settings: Settings,
    handbook: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, url = stack
    fake.prompt_versions = ["prm_a", "prm_a", "prm_b", "prm_a"]
    monkeypatch.setenv(API_KEY_ENV, KEY)
    argv = ["run", "--dataset", "handbook", "--base-url", url, "--handbook-file", str(handbook)]
    assert enclave_eval(settings, *argv) == 0
    out = capsys.readouterr().out
    assert "0.750" in out
    assert "failed q4: no relevant document cited (expected one of it-guest-wifi" in out
    # Reproducible requests: temperature 0, seed 7, a small budget, the knowledge base.
    assert len(fake.bodies) == 4
    for body in fake.bodies:
        assert body["temperature"] == 0
        assert body["seed"] == 7
        assert body["max_tokens"] == 96
        assert body["knowledge_base"] == "handbook"
        assert body["model"] == "smollm2"

    assert enclave_eval(settings, "report", "--json") == 0
    (stored,) = json.loads(capsys.readouterr().out)
    assert stored["dataset"] == "handbook"
    assert stored["tenant"] == "acme"
    assert (stored["cases"], stored["passed"], stored["score"]) == (4, 3, 0.75)
    assert stored["prompt_version"] == "prm_a"  # the most common of the answers, noted
    assert stored["config_version"] == "cfg_1"
    assert stored["model"] == "smollm2"
    details = stored["details"]
    assert "prompt_version: 2 different values" in details["notes"][0]
    assert details["versions_seen"] == {"prompt_version": {"prm_a": 3, "prm_b": 1}}
    assert details["cases"]["q1"] == {
        "passed": True,
        "failures": [],
        "citation": True,
        "loop": False,
    }
    assert details["cases"]["q4"]["passed"] is False
    assert details["mean_completion_tokens"] == 25.0
    assert details["fallback_share"] == 0.25
    assert details["degraded_share"] == 0.0
    assert "question" not in json.dumps(stored).lower()
    assert "laptop RAM" not in json.dumps(stored)
    assert "An answer" not in json.dumps(stored)


def test_a_regression_shows_as_a_step_and_fails_the_minimum_score(
    stack: tuple[FakeStack, str],
    settings: Settings,
    handbook: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, url = stack
    key_file = settings.paths.data_dir / "eval-key"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    base = ["run", "--base-url", url, "--handbook-file", str(handbook), "--dataset", "handbook"]
    base += ["--api-key-file", str(key_file), "--min-score", "0.7"]
    assert enclave_eval(settings, *base) == 0  # 0.75
    fake.prompt_versions = ["prm_new"]
    fake.wrong = {"wifi", "VPN"}
    assert enclave_eval(settings, *base) == 1  # 0.50 < 0.7
    out = capsys.readouterr().out
    assert "▼ step: -0.25 after prompt_version changed" in out

    assert enclave_eval(settings, "report", "--dataset", "handbook") == 0
    _header, newest, oldest = capsys.readouterr().out.splitlines()
    assert "prm_new" in newest
    assert "2/4" in newest
    assert "▼ -0.25 after prompt_version changed" in newest
    assert "3/4" in oldest
    assert "▼" not in oldest


def test_without_a_key_or_a_reachable_stack_nothing_runs_and_the_exit_code_is_2(
    settings: Settings,
    handbook: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    argv = ["run", "--dataset", "handbook", "--handbook-file", str(handbook)]
    assert enclave_eval(settings, *argv) == 2
    assert f"no API key: pass --api-key-file or set {API_KEY_ENV}" in capsys.readouterr().err
    monkeypatch.setenv(API_KEY_ENV, KEY)
    assert enclave_eval(settings, *argv, "--base-url", "http://127.0.0.1:9") == 2
    assert "cannot reach the API at http://127.0.0.1:9/v1" in capsys.readouterr().err
    assert enclave_eval(settings, "report") == 0
    assert "No evaluation runs stored yet" in capsys.readouterr().out


class _Scripted:
    def __init__(self, answers: list[Answer | None]) -> None:
        self.answers = answers

    def ask(self, messages: Any, *, knowledge_base: str | None, max_tokens: int) -> Answer:
        answer = self.answers.pop(0)
        if answer is None:
            raise AskFailed("HTTP 503 (request id req-1)")
        return answer


def test_an_unanswered_case_fails_and_a_dataset_nobody_answered_is_not_recorded() -> None:
    cases = [Case("q1", "?", ("it-vpn",)), Case("q2", "?", ("it-vpn",))]
    cited = {"sources": [{"document_id": "it-vpn"}], "retrieval": "degraded"}
    run = run_handbook(_Scripted([None, Answer("x", cited, 5)]), cases, knowledge_base="kb")
    assert [r.passed for r in run.results] == [False, True]
    assert run.results[0].failures == ("HTTP 503 (request id req-1)",)
    assert run.metrics["unanswered"] == 1
    assert run.metrics["degraded_share"] == 1.0  # of the answered cases
    with pytest.raises(EvalAborted, match="No handbook case got an answer"):
        run_handbook(_Scripted([None, None]), cases, knowledge_base="kb")


def test_the_most_common_version_wins_and_missing_versions_stay_empty() -> None:
    versions, notes, seen = dominant_versions(
        [{"model": "a", "prompt_version": "p1"}, {"model": "b"}, {"model": "a"}]
    )
    assert versions == {"prompt_version": "p1", "model": "a", "config_version": None}
    assert seen == {"model": {"a": 2, "b": 1}}
    assert notes == [
        "model: 2 different values in the answers; recorded the most common, a (2 of 3)"
    ]


def test_enclave_has_the_eval_command() -> None:
    from serving.ops.cli import _parser

    args = _parser().parse_args(["eval", "report", "--last", "5", "--json"])
    assert (args.eval_command, args.last, args.json) == ("report", 5, True)


SUITE = """
prompt: chat
cases:
  - id: cites-the-vpn-guide
    knowledge_base: handbook
    max_tokens: 64
    messages:
      - {role: user, content: "How do I set up the VPN?"}
    expect: {cites: [it-vpn], contains: [answer]}
  - id: never-says-answer
    messages:
      - {role: system, content: Be brief.}
      - {role: user, content: Say hello}
    expect: {not_contains: [answer]}
"""


def test_a_failing_suite_case_fails_the_run_and_is_stored_by_id_without_the_answer(
    stack: tuple[FakeStack, str],
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, url = stack
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "chat.yaml").write_text(SUITE, encoding="utf-8")
    monkeypatch.setenv(API_KEY_ENV, KEY)
    argv = ["run", "--dataset", "suites", "--base-url", url, "--suites-dir", str(suites)]
    assert enclave_eval(settings, *argv, "--json") == 1
    (stored,) = json.loads(capsys.readouterr().out)
    assert (stored["dataset"], stored["cases"], stored["passed"]) == ("suites", 2, 1)
    assert stored["score"] == 0.5
    cases = stored["details"]["cases"]
    assert cases["chat/cites-the-vpn-guide"] == {"passed": True, "failures": []}
    (failure,) = cases["chat/never-says-answer"]["failures"]
    assert failure == "contains 'answer', which it must not"  # the answer is not quoted
    assert "An answer" not in json.dumps(stored)
    # Each case is asked as written: its messages, knowledge base and answer budget.
    first, second = fake.bodies
    assert (first["knowledge_base"], first["max_tokens"]) == ("handbook", 64)
    assert "knowledge_base" not in second
    assert second["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert (second["temperature"], second["seed"]) == (0, 7)


def test_no_suites_is_an_error_that_names_the_folder(
    stack: tuple[FakeStack, str],
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, url = stack
    monkeypatch.setenv(API_KEY_ENV, KEY)
    argv = ["run", "--dataset", "suites", "--base-url", url, "--suites-dir", str(tmp_path)]
    assert enclave_eval(settings, *argv) == 2
    assert f"No prompt suite cases under {tmp_path}" in capsys.readouterr().err
