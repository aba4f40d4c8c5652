"""Prompt regression suites: the repo's suites load, bad files say what to fix, and each
expectation passes and fails on the property it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.prompts import (
    Expectation,
    PromptInvalid,
    SuiteCase,
    check_case,
    load_suite,
    load_suites,
    repo_prompt_names,
)

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
USER = ({"role": "user", "content": "How do I connect to the VPN?"},)


def test_every_repo_suite_loads_and_guards_a_repo_prompt() -> None:
    suites = load_suites(PROMPTS / "suites")
    assert suites, "prompts/suites holds no suite"
    prompts = set(repo_prompt_names(PROMPTS))
    for suite in suites:
        assert suite.prompt in prompts, f"suite {suite.name} guards unknown prompt {suite.prompt}"
        assert len({case.id for case in suite.cases}) == len(suite.cases)


def test_the_chat_suite_covers_the_properties_the_stack_decides() -> None:
    chat = next(s for s in load_suites(PROMPTS / "suites") if s.prompt == "chat")
    assert 6 <= len(chat.cases) <= 8
    expectations = [case.expect for case in chat.cases]
    assert any(e.refuses and e.decision == "block" for e in expectations)
    assert any("it-vpn" in e.cites and e.retrieval == "ok" for e in expectations)
    assert any(e.retrieval == "skipped" for e in expectations)
    assert any(e.keeps_placeholders for e in expectations)
    assert any(e.max_tokens for e in expectations)
    assert any("NWC-" in e.not_contains for e in expectations)
    cited = next(c for c in chat.cases if "it-vpn" in c.expect.cites)
    assert cited.knowledge_base == "handbook"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> str:
    with pytest.raises(PromptInvalid) as caught:
        load_suite(path)
    return " | ".join(caught.value.problems)


CASE = """
  - id: vpn
    messages: [{role: user, content: "How do I connect?"}]
    expect: {cites: [it-vpn]}
"""


def test_a_valid_suite_loads_with_defaults(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, f"prompt: chat\ncases:{CASE}"))
    assert suite.name == "suite"
    assert suite.prompt == "chat"
    (case,) = suite.cases
    assert case == SuiteCase(
        "vpn",
        ({"role": "user", "content": "How do I connect?"},),
        Expectation(cites=("it-vpn",)),
        None,
        96,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"prompt: chat\nmodel: x\ncases:{CASE}", "unknown key 'model'"),
        (f"cases:{CASE}", "'prompt' must name the prompt"),
        ("prompt: chat\ncases: []", "'cases' must be a non-empty list"),
        (
            f"prompt: chat\ncases:{CASE}    temperature: 0\n",
            "case 'vpn': unknown key 'temperature'",
        ),
        (
            "prompt: chat\ncases:\n  - id: a\n    messages: [{role: user, content: hi}]\n"
            "    expect: {contain: [x]}\n",
            "case 'a': expect: unknown key 'contain'",
        ),
        (
            "prompt: chat\ncases:\n  - id: a\n    messages: [{role: user, content: hi}]\n"
            "    expect: {keeps_placeholders: false}\n",
            "case 'a': expect checks nothing",
        ),
        (
            "prompt: chat\ncases:\n  - id: a\n    messages: [{role: user, content: hi}]\n"
            "    expect: {decision: maybe}\n",
            "case 'a': expect.decision must be one of",
        ),
        (
            "prompt: chat\ncases:\n  - id: a\n    messages: [{role: user, content: hi}]\n"
            "    expect: {contains: vpn}\n",
            "case 'a': expect.contains must be a list",
        ),
        (
            "prompt: chat\ncases:\n  - id: a\n    messages: [{role: user, content: hi}]\n"
            "    expect: {max_tokens: -1}\n",
            "case 'a': expect.max_tokens must be a positive",
        ),
        (
            "prompt: chat\ncases:\n  - id: a\n    messages: [{role: assistant, content: hi}]\n"
            "    expect: {refuses: true}\n",
            "case 'a': the last message must be the user's",
        ),
        (
            "prompt: chat\ncases:\n  - id: a\n    messages: [{role: user, text: hi}]\n"
            "    expect: {refuses: true}\n",
            "case 'a': message 1 must be",
        ),
        ("prompt: chat\ncases:\n  - messages: []\n", "case 1: needs an 'id'"),
        (f"prompt: chat\ncases:{CASE}{CASE}", "case id 'vpn' is used twice"),
        ("prompt: chat\ncases: [a: b", "not valid YAML"),
    ],
)
def test_suite_loading_errors_name_the_file_and_the_case(
    tmp_path: Path, text: str, expected: str
) -> None:
    problems = problems_of(write(tmp_path, text))
    assert expected in problems
    assert str(tmp_path / "suite.yaml") in problems


def test_every_problem_of_a_suite_is_listed(tmp_path: Path) -> None:
    text = (
        "prompt: chat\nowner: me\ncases:\n"
        "  - id: a\n    messages: [{role: user, content: hi}]\n    expect: {refuse: true}\n"
        "  - id: b\n    messages: [{role: user, content: hi}]\n    expect: {retrieval: maybe}\n"
    )
    problems = problems_of(write(tmp_path, text))
    assert "unknown key 'owner'" in problems
    assert "case 'a': expect: unknown key 'refuse'" in problems
    assert "case 'b': expect.retrieval must be one of" in problems


def case(**expect: Any) -> SuiteCase:
    return SuiteCase("c1", USER, Expectation(**expect))


def lineage(
    decision: str = "answer", retrieval: str = "ok", cited: tuple[str, ...] = ("it-vpn",)
) -> dict[str, Any]:
    sources = [{"number": n, "document_id": d} for n, d in enumerate(cited, start=1)]
    return {"decision": decision, "retrieval": retrieval, "sources": sources}


def failures(expect: dict[str, Any], answer: str = "", tokens: int = 10, **lin: Any) -> list[str]:
    outcome = check_case(case(**expect), answer, lineage(**lin), tokens)
    assert outcome.case_id == "c1"
    assert outcome.passed == (not outcome.failures)
    return list(outcome.failures)


def test_contains_needs_every_string_case_insensitively() -> None:
    expect = {"contains": ("nwconnect", "VPN")}
    assert failures(expect, "Open NWConnect and start the vpn.") == []
    (failure,) = failures(expect, "Open NWConnect and start it.")
    assert failure.startswith("does not contain 'VPN'")
    assert "answer: 'Open NWConnect and start it.'" in failure


def test_contains_any_needs_one_of_them() -> None:
    expect = {"contains_any": ("12 hours", "twelve hours")}
    assert failures(expect, "It lasts Twelve Hours.") == []
    assert failures(expect, "It lasts a day.")[0].startswith("contains none of")


def test_not_contains_refuses_each_listed_string() -> None:
    expect = {"not_contains": ("NWC-",)}
    assert failures(expect, "I cannot share that.") == []
    (failure,) = failures(expect, "The reference is nwc-1234")
    assert failure.startswith("contains 'NWC-', which it must not")


def test_failures_quote_at_most_80_characters_of_the_answer() -> None:
    (failure,) = failures({"contains": ("zzz",)}, "word " * 100)
    quoted = failure.split("answer: ", 1)[1].removesuffix(")")
    assert len(quoted) <= 80 + 3  # quotes and the ellipsis


def test_cites_looks_at_the_lineage_sources() -> None:
    assert failures({"cites": ("it-vpn",)}, cited=("it-guest-wifi", "it-vpn")) == []
    (failure,) = failures({"cites": ("it-vpn",)}, cited=("it-guest-wifi",))
    assert failure == "does not cite doc 'it-vpn' (cited: ['it-guest-wifi'])"
    assert failures({"cites": ("it-vpn",)}, cited=())[0].endswith("(cited: nothing)")


def test_decision_and_refuses() -> None:
    assert failures({"decision": "block"}, decision="block") == []
    assert failures({"decision": "block"}, decision="answer") == [
        "decision is 'answer', expected 'block'"
    ]
    for refusing in ("refuse", "block", "escalate"):
        assert failures({"refuses": True}, decision=refusing) == []
        assert failures({"refuses": False}, decision=refusing) == [
            f"expected an answer, got decision {refusing!r}"
        ]
    for answering in ("answer", "answer_without_documents"):
        assert failures({"refuses": False}, decision=answering) == []
        assert failures({"refuses": True}, decision=answering) != []


def test_max_tokens_caps_completion_tokens() -> None:
    assert failures({"max_tokens": 32}, tokens=32) == []
    assert failures({"max_tokens": 32}, tokens=33) == ["used 33 completion tokens, more than 32"]


@pytest.mark.parametrize(
    "answer",
    [
        "Hi <PERSON_1>, your ticket is open.",
        "I'll write to <EMAIL_ADDRESS_2> today.",
        "Hello <PERSON",
        "Mail <EMAIL_ADDRESS_",
        "Thanks PERSON_1> for asking.",
        "Thanks PERSON_1 for asking.",
    ],
)
def test_keeps_placeholders_fails_on_any_trace_of_one(answer: str) -> None:
    (failure,) = failures({"keeps_placeholders": True}, answer)
    assert failure.startswith("placeholders left in the answer")


def test_keeps_placeholders_passes_restored_answers() -> None:
    answer = "Hi Marta Lindqvist, I'll reply to marta.lindqvist@northwind.example. Error NWC-403."
    assert failures({"keeps_placeholders": True}, answer) == []


def test_retrieval_status() -> None:
    assert failures({"retrieval": "skipped"}, retrieval="skipped") == []
    assert failures({"retrieval": "skipped"}, retrieval="ok") == [
        "retrieval is 'ok', expected 'skipped'"
    ]


def test_every_failed_property_is_reported() -> None:
    outcome = check_case(
        case(decision="block", retrieval="skipped", max_tokens=5, cites=("it-vpn",)),
        "Sure!",
        lineage(decision="answer", retrieval="ok", cited=()),
        12,
    )
    assert not outcome.passed
    assert len(outcome.failures) == 4
