"""Prompt regression suites: cases of input → expected properties, kept as YAML in the repo.

A suite guards one prompt (``prompt: chat``). Each case is a conversation and what the
answer and its lineage must show. ``check_case`` judges one answer; running the cases
against the model is the caller's job (the activation gate, ``enclave eval``, the tests).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from core.prompts.errors import PromptInvalid

__all__ = [
    "CaseOutcome",
    "Expectation",
    "PromptSuite",
    "SuiteCase",
    "check_case",
    "load_suite",
    "load_suites",
]

DECISIONS = ("answer", "answer_without_documents", "refuse", "escalate", "block")
REFUSING = frozenset({"refuse", "block", "escalate"})
RETRIEVAL_STATUSES = ("ok", "empty", "degraded", "skipped")
_ROLES = ("system", "user", "assistant")
_MAX_CASE_TOKENS = 4_096
_QUOTE_CHARS = 80
# What restoring placeholders leaves behind when the model mangles one: a whole placeholder,
# one cut short ("<EMAIL_ADDRESS_", "<PERSON"), or one missing its '<' ("PERSON_1>").
_PLACEHOLDER_TRACE = re.compile(
    r"<[A-Z][A-Z_]{1,30}_\d{0,4}>?"
    r"|<(?:PERSON|LOCATION|EMAIL|PHONE|CREDIT|IBAN|IP_|US_)[A-Z_]*"
    r"|\b[A-Z][A-Z_]{1,30}_\d{1,4}>?"
)


@dataclass(frozen=True)
class Expectation:
    """What one case's answer and lineage must show; every field set is checked."""

    contains: tuple[str, ...] = ()  # all of these, case-insensitive
    contains_any: tuple[str, ...] = ()  # at least one of these, case-insensitive
    not_contains: tuple[str, ...] = ()  # none of these, case-insensitive
    cites: tuple[str, ...] = ()  # document ids among lineage["sources"]
    decision: str | None = None  # lineage["decision"]
    refuses: bool | None = None  # decision in refuse/block/escalate (or not)
    max_tokens: int | None = None  # completion tokens at most this
    keeps_placeholders: bool = False  # no placeholder, or piece of one, left in the answer
    retrieval: str | None = None  # lineage["retrieval"]

    def is_empty(self) -> bool:
        """Whether nothing is expected (a case that could never fail)."""
        return self == Expectation()


@dataclass(frozen=True)
class SuiteCase:
    """One conversation and the properties its answer must have."""

    id: str
    messages: tuple[dict[str, str], ...]
    expect: Expectation
    knowledge_base: str | None = None
    max_tokens: int = 96


@dataclass(frozen=True)
class PromptSuite:
    """The regression cases that guard one prompt."""

    name: str
    prompt: str
    cases: tuple[SuiteCase, ...]


@dataclass(frozen=True)
class CaseOutcome:
    """The verdict on one case: passed, or each failed property in words."""

    case_id: str
    passed: bool
    failures: tuple[str, ...]


def check_case(
    case: SuiteCase, answer: str, lineage: Mapping[str, Any], completion_tokens: int
) -> CaseOutcome:
    """Judge ``answer`` (as the user saw it) and its ``lineage`` against ``case.expect``."""
    expect = case.expect
    failures: list[str] = []
    lowered = answer.casefold()
    quote = _quote(answer)
    failures.extend(
        f"does not contain {text!r} ({quote})"
        for text in expect.contains
        if text.casefold() not in lowered
    )
    if expect.contains_any and not any(t.casefold() in lowered for t in expect.contains_any):
        failures.append(f"contains none of {list(expect.contains_any)!r} ({quote})")
    failures.extend(
        f"contains {text!r}, which it must not ({quote})"
        for text in expect.not_contains
        if text.casefold() in lowered
    )
    cited = _cited(lineage)
    failures.extend(
        f"does not cite doc {doc!r} (cited: {sorted(cited) or 'nothing'})"
        for doc in expect.cites
        if doc not in cited
    )
    decision = lineage.get("decision")
    if expect.decision is not None and decision != expect.decision:
        failures.append(f"decision is {decision!r}, expected {expect.decision!r}")
    if expect.refuses is not None and (decision in REFUSING) != expect.refuses:
        wanted = "a refusal" if expect.refuses else "an answer"
        failures.append(f"expected {wanted}, got decision {decision!r}")
    if expect.max_tokens is not None and completion_tokens > expect.max_tokens:
        failures.append(
            f"used {completion_tokens} completion tokens, more than {expect.max_tokens}"
        )
    if expect.keeps_placeholders:
        traces = sorted({m.group(0) for m in _PLACEHOLDER_TRACE.finditer(answer)})
        if traces:
            failures.append(f"placeholders left in the answer: {traces}")
    retrieval = lineage.get("retrieval")
    if expect.retrieval is not None and retrieval != expect.retrieval:
        failures.append(f"retrieval is {retrieval!r}, expected {expect.retrieval!r}")
    return CaseOutcome(case.id, not failures, tuple(failures))


def _cited(lineage: Mapping[str, Any]) -> set[str]:
    # The response's sources name the document "document_id"; accept "doc_id" as well.
    cited: set[str] = set()
    for source in lineage.get("sources") or ():
        if isinstance(source, Mapping):
            doc = source.get("document_id", source.get("doc_id"))
            if isinstance(doc, str):
                cited.add(doc)
    return cited


def _quote(answer: str) -> str:
    flat = " ".join(answer.split())
    shown = flat if len(flat) <= _QUOTE_CHARS else flat[:_QUOTE_CHARS] + "…"
    return f"answer: {shown!r}"


def load_suites(directory: Path) -> list[PromptSuite]:
    """Every ``*.yaml`` suite in ``directory``, by file name."""
    return [load_suite(path) for path in sorted(directory.glob("*.yaml"))]


def load_suite(path: Path) -> PromptSuite:
    """Read and validate one suite file; every problem, each with the file and case."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromptInvalid(f"{path}: cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise PromptInvalid(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise PromptInvalid(f"{path}: a suite is a mapping with 'prompt' and 'cases'")
    problems = _unknown(raw, {"name", "prompt", "cases"}, f"{path}")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        problems.append(f"{path}: 'prompt' must name the prompt the suite guards, e.g. chat")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name:
        problems.append(f"{path}: 'name' must be text")
    raw_cases = raw.get("cases")
    cases: list[SuiteCase] = []
    if not isinstance(raw_cases, list) or not raw_cases:
        problems.append(f"{path}: 'cases' must be a non-empty list")
    else:
        seen: set[str] = set()
        for index, raw_case in enumerate(raw_cases):
            case, found = _case(raw_case, f"{path}: case {index + 1}")
            problems.extend(found)
            if case is not None:
                if case.id in seen:
                    problems.append(f"{path}: case id {case.id!r} is used twice")
                seen.add(case.id)
                cases.append(case)
    if problems:
        raise PromptInvalid(problems)
    return PromptSuite(str(name), str(prompt), tuple(cases))


def _unknown(raw: Mapping[Any, Any], allowed: set[str], where: str) -> list[str]:
    return [
        f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})"
        for key in raw
        if key not in allowed
    ]


_CASE_KEYS = {"id", "messages", "expect", "knowledge_base", "max_tokens"}


def _case(raw: Any, where: str) -> tuple[SuiteCase | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f"{where}: must be a mapping with id, messages and expect"]
    case_id = raw.get("id")
    if isinstance(case_id, str) and case_id:
        where = f"{where.rsplit(': ', 1)[0]}: case {case_id!r}"
    else:
        return None, [f"{where}: needs an 'id' (text)"]
    problems = _unknown(raw, _CASE_KEYS, where)
    messages = _messages(raw.get("messages"), where, problems)
    knowledge_base = raw.get("knowledge_base")
    if knowledge_base is not None and not isinstance(knowledge_base, str):
        problems.append(f"{where}: 'knowledge_base' must be a knowledge base name")
    max_tokens = raw.get("max_tokens", 96)
    if not _positive_int(max_tokens) or max_tokens > _MAX_CASE_TOKENS:
        problems.append(f"{where}: 'max_tokens' must be a whole number 1..{_MAX_CASE_TOKENS}")
    expect = _expectation(raw.get("expect"), where, problems)
    if problems or expect is None:
        return None, problems
    return SuiteCase(case_id, messages, expect, knowledge_base, max_tokens), problems


def _messages(raw: Any, where: str, problems: list[str]) -> tuple[dict[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
        return ()
    messages: list[dict[str, str]] = []
    for number, message in enumerate(raw, start=1):
        if (
            not isinstance(message, dict)
            or set(message) != {"role", "content"}
            or message["role"] not in _ROLES
            or not isinstance(message["content"], str)
        ):
            problems.append(
                f"{where}: message {number} must be {{role: system|user|assistant, content: text}}"
            )
            continue
        messages.append({"role": message["role"], "content": message["content"]})
    if messages and messages[-1]["role"] != "user":
        problems.append(f"{where}: the last message must be the user's")
    return tuple(messages)


def _expectation(raw: Any, where: str, problems: list[str]) -> Expectation | None:
    allowed = {f.name for f in fields(Expectation)}
    if not isinstance(raw, dict) or not raw:
        problems.append(
            f"{where}: 'expect' must map properties ({', '.join(sorted(allowed))}) "
            "to what is expected"
        )
        return None
    found = _unknown(raw, allowed, f"{where}: expect")
    values: dict[str, Any] = {}
    for key in ("contains", "contains_any", "not_contains", "cites"):
        if key in raw:
            items = raw[key]
            if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
                found.append(f"{where}: expect.{key} must be a list of non-empty strings")
            else:
                values[key] = tuple(items)
    for key in ("refuses", "keeps_placeholders"):
        if key in raw:
            if not isinstance(raw[key], bool):
                found.append(f"{where}: expect.{key} must be true or false")
            else:
                values[key] = raw[key]
    for key, choices in (("decision", DECISIONS), ("retrieval", RETRIEVAL_STATUSES)):
        if key in raw:
            if raw[key] not in choices:
                found.append(f"{where}: expect.{key} must be one of {', '.join(choices)}")
            else:
                values[key] = raw[key]
    if "max_tokens" in raw:
        if not _positive_int(raw["max_tokens"]):
            found.append(f"{where}: expect.max_tokens must be a positive whole number")
        else:
            values["max_tokens"] = raw["max_tokens"]
    problems.extend(found)
    if found:
        return None
    expectation = Expectation(**values)
    if expectation.is_empty():
        problems.append(f"{where}: expect checks nothing (e.g. keeps_placeholders: false only)")
        return None
    return expectation


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
