"""The static half of the sandbox: what a prompt template may not contain, found by
walking its parsed form before it is ever rendered."""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

__all__ = ["ALLOWED_FILTERS", "GLOBALS", "ast_problems"]

GLOBALS = ("range", "namespace")  # the only globals a template sees; callable only
ALLOWED_FILTERS = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "dictsort", "first", "float", "int",
        "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
        "rejectattr", "replace", "reverse", "round", "select", "selectattr", "sort", "string",
        "striptags", "sum", "title", "trim", "truncate", "unique", "upper", "wordcount",
    }
)  # fmt: skip

_FORBIDDEN_NODES: dict[type[nodes.Node], str] = {
    nodes.Include: "{% include %} is not available: a prompt part is one template",
    nodes.Import: "{% import %} is not available: define macros in the part itself",
    nodes.FromImport: "{% from ... import %} is not available: define macros in the part",
    nodes.Extends: "{% extends %} is not available: layers (global, tenant, client) "
    "replace whole parts instead",
    nodes.Block: "{% block %} is not available: layers replace whole parts instead",
}


def _forbidden_string(value: Any) -> bool:
    return isinstance(value, str) and any(p.startswith("_") for p in value.split("."))


def ast_problems(tree: nodes.Template) -> list[tuple[int, str]]:
    """What the template may not do, with lines (the static half of the sandbox)."""
    found: list[tuple[int, str]] = []
    called = {id(call.node) for call in tree.find_all(nodes.Call)}
    for node in tree.find_all(nodes.Node):
        line = node.lineno
        message = _FORBIDDEN_NODES.get(type(node))
        if message is not None:
            found.append((line, message))
        elif isinstance(node, nodes.Getattr | nodes.NSRef) and node.attr.startswith("_"):
            found.append(
                (
                    line,
                    f"attribute '{node.attr}' is not allowed: names starting "
                    "with '_' are Python internals",
                )
            )
        elif isinstance(node, nodes.Getitem) and _forbidden_string(_const(node.arg)):
            found.append(
                (
                    line,
                    f"item '{_const(node.arg)}' is not allowed: names starting "
                    "with '_' are Python internals",
                )
            )
        elif isinstance(node, nodes.Name):
            found.extend(_name_problem(node, called))
        elif isinstance(node, nodes.Filter) and node.name not in ALLOWED_FILTERS:
            allowed = ", ".join(sorted(ALLOWED_FILTERS))
            found.append((line, f"filter '{node.name}' is not available (allowed: {allowed})"))
        if isinstance(node, nodes.Filter | nodes.Test | nodes.Call):
            arguments = [*node.args, *(k.value for k in node.kwargs)]
            found.extend(
                (
                    line,
                    f"argument '{_const(a)}' is not allowed: names starting with '_' "
                    "are Python internals",
                )
                for a in arguments
                if _forbidden_string(_const(a))
            )
    return found


def _name_problem(node: nodes.Name, called: set[int]) -> list[tuple[int, str]]:
    if node.name.startswith("_"):
        return [
            (
                node.lineno,
                f"name '{node.name}' is not allowed: names starting with '_' are reserved",
            )
        ]
    if node.name == "self":
        return [(node.lineno, "'self' is not available in prompt templates")]
    if node.name in GLOBALS and node.ctx == "load" and id(node) not in called:
        return [(node.lineno, f"'{node.name}' can only be called, like {node.name}(...)")]
    return []


def _const(node: nodes.Node) -> Any:
    return node.value if isinstance(node, nodes.Const) else None
