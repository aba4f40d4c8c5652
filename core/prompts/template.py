"""A prompt template: its parts and declared variables, validated as a whole at save time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from core.prompts.errors import PromptInvalid, PromptRenderError
from core.prompts.sandbox import CompiledPart, checked, trial_render
from core.prompts.variables import (
    BUILTIN_VARIABLES,
    MODEL_PARTS,
    PART_NAMES,
    VARIABLE_TYPES,
    VariableSpec,
    parse_variables,
    sample_value,
    type_problem,
)

__all__ = ["MAX_PART_CHARS", "PromptTemplate", "bind_values", "template_problems"]

MAX_PART_CHARS = 20_000
_SECRET_BUILTINS = ("canary",)


@dataclass(frozen=True)
class PromptTemplate:
    """Parts (a subset of ``PART_NAMES``) and the variables they declare.

    Build it with ``from_document``, which validates; a template built directly is checked
    again, part by part, when it is first rendered.
    """

    parts: Mapping[str, str]
    variables: Mapping[str, VariableSpec]

    @classmethod
    def from_document(
        cls,
        document: Mapping[str, Any],
        *,
        inherited: Mapping[str, VariableSpec] | None = None,
    ) -> PromptTemplate:
        """Validate a ``{"parts": ..., "variables": ...}`` document; every problem at once.

        ``inherited``: variables an outer layer declares (a client layer may use its
        tenant's variables); without it the template must declare all it uses.
        """
        if not isinstance(document, Mapping):
            raise PromptInvalid("a prompt must be a mapping with 'parts' and 'variables'")
        problems = [
            f"unknown key {key!r} (a prompt has 'parts' and 'variables')"
            for key in document
            if key not in {"parts", "variables"}
        ]
        parts, found = _parse_parts(document.get("parts"))
        problems.extend(found)
        variables, found = parse_variables(document.get("variables"))
        problems.extend(found)
        if not document.get("parts") and not document.get("variables"):
            problems.append("a prompt defines at least one part or variable")
        problems.extend(template_problems(parts, {**(inherited or {}), **variables}))
        if problems:
            raise PromptInvalid(problems)
        return cls(MappingProxyType(parts), MappingProxyType(variables))

    def to_document(self) -> dict[str, Any]:
        """The JSON-able document ``from_document`` reads back."""
        return {
            "parts": {name: self.parts[name] for name in PART_NAMES if name in self.parts},
            "variables": {name: spec.to_document() for name, spec in self.variables.items()},
        }

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical document: equal templates, equal digests."""
        canonical = json.dumps(
            self.to_document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _parse_parts(document: Any) -> tuple[dict[str, str], list[str]]:
    if document is None:
        return {}, []  # a layer may change only variables
    if not isinstance(document, Mapping):
        return {}, [f"'parts' must map part names ({', '.join(PART_NAMES)}) to template text"]
    problems: list[str] = []
    parts: dict[str, str] = {}
    for name, text in document.items():
        if name not in PART_NAMES:
            problems.append(f"unknown part {name!r}: parts are {', '.join(PART_NAMES)}")
        elif not isinstance(text, str) or not text.strip():
            problems.append(
                f"part '{name}' must be non-empty text (leave a part out to inherit it)"
            )
        elif len(text) > MAX_PART_CHARS:
            problems.append(
                f"part '{name}' has {len(text)} characters; at most {MAX_PART_CHARS} are allowed"
            )
        else:
            parts[name] = text
    return parts, problems


def template_problems(parts: Mapping[str, str], variables: Mapping[str, VariableSpec]) -> list[str]:
    """Everything wrong with ``parts`` given the declared ``variables`` (empty: fine)."""
    problems: list[str] = []
    for name in PART_NAMES:
        if name not in parts:
            continue
        compiled, found = checked(parts[name])
        problems.extend(f"part '{name}' line {line}: {message}" for line, message in found)
        if compiled is None:
            continue
        undeclared = sorted(compiled.names - set(variables) - set(BUILTIN_VARIABLES))
        problems.extend(
            f"part '{name}' line {compiled.lines.get(var, 1)} uses undeclared variable "
            f"'{var}': declare it under variables (type {', '.join(VARIABLE_TYPES)})"
            for var in undeclared
        )
        if name not in MODEL_PARTS:
            problems.extend(
                f"part '{name}' line {compiled.lines.get(var, 1)} uses '{var}': it is "
                f"secret and may only appear in the {' and '.join(MODEL_PARTS)} parts"
                for var in _SECRET_BUILTINS
                if var in compiled.names
            )
        if not undeclared:
            problems.extend(_trial_problems(name, compiled, variables))
    return problems


def _trial_problems(
    name: str, compiled: CompiledPart, variables: Mapping[str, VariableSpec]
) -> list[str]:
    # Sample values of each declared type, then the edge case of no documents: type misuse
    # (a loop over a str, a missing key) shows at save time, not on a user's request.
    samples: dict[str, Any] = {}
    for var in compiled.names:
        spec = variables.get(var) or BUILTIN_VARIABLES[var]
        if spec.default is not None and var not in BUILTIN_VARIABLES:
            samples[var] = spec.default
        else:
            samples[var] = sample_value(spec.type)
    trials = [samples]
    if "documents" in compiled.names:
        trials.append({**samples, "documents": []})
    for values in trials:
        bound = bind_values(name, compiled, variables, values)
        failed = trial_render(compiled, bound)
        if failed is not None:
            line, message = failed
            at = f" line {line}" if line else ""
            return [f"part '{name}'{at}: rendering with sample values failed ({message})"]
    return []


def bind_values(
    part: str,
    compiled: CompiledPart,
    variables: Mapping[str, VariableSpec],
    values: Mapping[str, Any],
) -> dict[str, Any]:
    """The render context of one part: given values type-checked, defaults filled in."""
    bound: dict[str, Any] = {}
    for name in compiled.names:
        spec = variables.get(name) or BUILTIN_VARIABLES.get(name)
        if spec is None:
            raise PromptRenderError(f"prompt part '{part}' uses undeclared variable '{name}'")
        if name in values:
            value = values[name]
            wrong = type_problem(spec.type, value)
            if wrong is not None:
                raise PromptRenderError(
                    f"variable '{name}' of prompt part '{part}': {wrong}",
                    extra={"part": part, "variable": name},
                )
        elif spec.default is not None:
            value = spec.default
        else:
            raise PromptRenderError(
                f"prompt part '{part}' needs a value for variable '{name}' (it has no default)",
                extra={"part": part, "variable": name},
            )
        if spec.type == "documents":
            value = [_document(d) for d in value]
        bound[name] = value
    return bound


def _document(document: Mapping[str, Any]) -> Mapping[str, Any]:
    # heading_path is optional in the value but always there for the template, so that
    # templates can test it without StrictUndefined failing.
    if "heading_path" in document:
        return document
    return {**document, "heading_path": ()}
