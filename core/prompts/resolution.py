"""Inheritance: global → tenant → client layers merged into the prompt a request uses."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from core.prompts.errors import PromptInvalid
from core.prompts.sandbox import CompiledPart, compiled, render_part
from core.prompts.template import PromptTemplate, bind_values, template_problems
from core.prompts.variables import PART_NAMES, VariableSpec

__all__ = ["EffectivePrompt", "PromptLayer", "Scope", "diff", "global_layer", "resolve"]

Scope = Literal["global", "tenant", "client"]
_ORDER: dict[str, int] = {"global": 0, "tenant": 1, "client": 2}


@dataclass(frozen=True)
class PromptLayer:
    """One version of one scope's prompt, as it takes part in resolution."""

    scope: Scope
    label: str  # "global", "tenant:acme", "client:acme/portal"
    version_id: str  # "global@<12 hex>" for the repo prompt, "pv_..." for stored versions
    number: int  # 0 for the repo prompt
    template: PromptTemplate

    def chain_entry(self) -> dict[str, Any]:
        """How this layer appears in the lineage's version chain."""
        return {
            "scope": self.scope,
            "label": self.label,
            "version_id": self.version_id,
            "number": self.number,
        }


def global_layer(template: PromptTemplate) -> PromptLayer:
    """The repo prompt as the global layer; its version is a hash of its content."""
    return PromptLayer("global", "global", f"global@{template.digest()[:12]}", 0, template)


@dataclass(frozen=True)
class EffectivePrompt:
    """The merged prompt of one request's layers, ready to render (parts compiled once)."""

    version: str
    chain: tuple[dict[str, Any], ...]
    template: PromptTemplate
    _compiled: Mapping[str, CompiledPart] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = {name: compiled(text) for name, text in self.template.parts.items()}
        object.__setattr__(self, "_compiled", MappingProxyType(parts))

    def has(self, part: str) -> bool:
        """Whether the merged prompt defines ``part``."""
        return part in self._compiled

    def render(self, part: str, values: Mapping[str, Any]) -> str:
        """Render ``part`` with the builtins (and any declared variables) in ``values``.

        Declared defaults fill the rest. A missing required value or one of the wrong type
        raises PromptRenderError; a part the prompt does not define raises KeyError.
        """
        compiled_part = self._compiled[part]
        bound = bind_values(part, compiled_part, self.template.variables, values)
        return render_part(part, compiled_part, bound)


def resolve(layers: Sequence[PromptLayer]) -> EffectivePrompt:
    """Merge ``layers`` (global, then tenant, then client; only global is required).

    A later layer's part replaces the earlier one; variables merge, the later layer
    winning. The merged template is validated as a whole.
    """
    if not layers or layers[0].scope != "global":
        raise ValueError("resolve() needs the global layer first")
    ranks = [_ORDER[layer.scope] for layer in layers]
    if ranks != sorted(set(ranks)):
        raise ValueError(
            f"layers must be ordered global, tenant, client, each at most once: "
            f"got {[layer.scope for layer in layers]}"
        )
    parts: dict[str, str] = {}
    variables: dict[str, VariableSpec] = {}
    for layer in layers:
        parts.update(layer.template.parts)
        variables.update(layer.template.variables)
    problems = [] if "system" in parts else ["the global layer must define the 'system' part"]
    problems.extend(template_problems(parts, variables))
    if problems:
        labels = " → ".join(layer.label for layer in layers)
        raise PromptInvalid(
            [f"{labels}: {problem}" for problem in problems],
            extra={"chain": [layer.chain_entry() for layer in layers]},
        )
    merged = PromptTemplate(MappingProxyType(parts), MappingProxyType(variables))
    return EffectivePrompt(
        version=layers[-1].version_id,
        chain=tuple(layer.chain_entry() for layer in layers),
        template=merged,
    )


def diff(a: PromptTemplate, b: PromptTemplate, a_label: str, b_label: str) -> str:
    """A unified diff of each part, then of the variables; empty when they are equal."""
    sections: list[str] = []
    for part in PART_NAMES:
        before, after = a.parts.get(part), b.parts.get(part)
        if before == after:
            continue
        sections.extend(
            difflib.unified_diff(
                _lines(before),
                _lines(after),
                fromfile=f"{a_label}/{part}" if before is not None else "/dev/null",
                tofile=f"{b_label}/{part}" if after is not None else "/dev/null",
            )
        )
    before_vars = _variables_text(a.variables)
    after_vars = _variables_text(b.variables)
    if before_vars != after_vars:
        sections.extend(
            difflib.unified_diff(
                before_vars,
                after_vars,
                fromfile=f"{a_label}/variables",
                tofile=f"{b_label}/variables",
            )
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in sections)


def _lines(text: str | None) -> list[str]:
    if text is None:
        return []
    return [line + "\n" for line in text.split("\n")]


def _variables_text(variables: Mapping[str, VariableSpec]) -> list[str]:
    document = {name: spec.to_document() for name, spec in variables.items()}
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
    return [line + "\n" for line in text.split("\n")]
