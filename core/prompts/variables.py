"""Prompt parts, typed template variables and the builtins every request supplies."""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

__all__ = [
    "BUILTIN_VARIABLES",
    "MODEL_PARTS",
    "PART_NAMES",
    "RESERVED_NAMES",
    "VARIABLE_TYPES",
    "VariableSpec",
    "VariableType",
    "parse_variables",
    "sample_value",
    "type_problem",
]

PART_NAMES: tuple[str, ...] = ("system", "developer", "refusal", "blocked", "escalation", "welcome")
# Only these go to the model; the others are shown to users as they render.
MODEL_PARTS: tuple[str, ...] = ("system", "developer")

VariableType = Literal["str", "int", "float", "bool", "list[str]", "documents"]
VARIABLE_TYPES: tuple[str, ...] = get_args(VariableType)

# Names a template may not declare: Jinja's own (loop, self, ...) and the sandbox's globals.
RESERVED_NAMES = frozenset(
    {"loop", "self", "caller", "varargs", "kwargs", "range", "namespace", "true", "false"}
    | {"none", "True", "False", "None"}
)
MAX_VARIABLES = 50
_MAX_DESCRIPTION = 500
_DOCUMENT_KEYS = {"number": int, "title": str, "text": str, "doc_id": str}


@dataclass(frozen=True, slots=True)
class VariableSpec:
    """A declared template variable: its type, what it is for, and its default.

    ``default`` None on a declared (non-builtin) variable means the caller must supply it.
    """

    type: VariableType
    description: str = ""
    default: Any = None

    def to_document(self) -> dict[str, Any]:
        """The JSON-able form ``parse_variables`` reads back."""
        document: dict[str, Any] = {"type": self.type}
        if self.description:
            document["description"] = self.description
        if self.default is not None:
            document["default"] = _jsonable(self.default)
        return document


BUILTIN_VARIABLES: Mapping[str, VariableSpec] = MappingProxyType(
    {
        "canary": VariableSpec("str", "Secret canary token; a reply containing it is cut."),
        "documents": VariableSpec(
            "documents",
            "Retrieved documents: number, title, text, doc_id (heading_path optional); "
            "may be empty.",
            default=(),
        ),
        "today": VariableSpec("str", "Today's date, ISO 8601 (YYYY-MM-DD)."),
        "tenant": VariableSpec("str", "The tenant the request belongs to."),
        "language": VariableSpec("str", "The user's language, BCP 47.", default="en"),
    }
)


def type_problem(type_: str, value: Any) -> str | None:
    """Why ``value`` is not a ``type_``, or None when it is."""
    match type_:
        case "str":
            ok = isinstance(value, str)
        case "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        case "float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        case "bool":
            ok = isinstance(value, bool)
        case "list[str]":
            ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        case "documents":
            return _documents_problem(value)
        case _:
            return f"unknown type {type_!r}"
    return None if ok else f"expected {type_}, got {_kind(value)}"


def _documents_problem(value: Any) -> str | None:
    if not isinstance(value, list | tuple):
        return f"expected a list of documents, got {_kind(value)}"
    for index, document in enumerate(value):
        if not isinstance(document, Mapping):
            return f"document {index} is {_kind(document)}, not a mapping"
        for key, expected in _DOCUMENT_KEYS.items():
            item = document.get(key)
            if not isinstance(item, expected) or isinstance(item, bool):
                return f"document {index} needs {key!r} of type {expected.__name__}"
        path = document.get("heading_path", ())
        if not isinstance(path, list | tuple) or not all(isinstance(p, str) for p in path):
            return f"document {index}: 'heading_path' must be a list of strings"
    return None


def _kind(value: Any) -> str:
    # The type's name only: a wrong value's text may be personal data or a secret.
    return type(value).__name__


def sample_value(type_: str, *, empty: bool = False) -> Any:
    """A value of ``type_`` for the trial render at save time (``empty``: the edge case)."""
    if empty:
        return {"str": "", "int": 0, "float": 0.0, "bool": False}.get(type_, [])
    samples: dict[str, Any] = {
        "str": "sample",
        "int": 3,
        "float": 1.5,
        "bool": True,
        "list[str]": ["first", "second"],
        "documents": [
            {
                "number": 1,
                "title": "Sample document",
                "text": "Sample text.",
                "doc_id": "sample-doc",
                "heading_path": ["Section"],
            },
            {"number": 2, "title": "Second", "text": "More text.", "doc_id": "second-doc"},
        ],
    }
    return samples[type_]


def parse_variables(document: Any) -> tuple[dict[str, VariableSpec], list[str]]:
    """Read the ``variables`` mapping of a template document; returns specs and problems."""
    if document is None:
        return {}, []
    if not isinstance(document, Mapping):
        return {}, ["'variables' must be a mapping of name to {type, description, default}"]
    problems: list[str] = []
    if len(document) > MAX_VARIABLES:
        problems.append(f"{len(document)} variables declared; at most {MAX_VARIABLES} are allowed")
    specs: dict[str, VariableSpec] = {}
    for name, raw in document.items():
        spec, found = _parse_one(name, raw)
        problems.extend(found)
        if spec is not None:
            specs[name] = spec
    return specs, problems


def _parse_one(name: Any, raw: Any) -> tuple[VariableSpec | None, list[str]]:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        return None, [
            f"variable name {name!r} must be a Python-style identifier (letters, "
            "digits, underscores; not starting with a digit)"
        ]
    where = f"variable '{name}'"
    if name.startswith("_"):
        return None, [f"{where}: names starting with '_' are reserved for the sandbox"]
    if name in BUILTIN_VARIABLES:
        return None, [f"{where} is a builtin the chat pipeline supplies; remove its declaration"]
    if name in RESERVED_NAMES:
        return None, [f"{where} clashes with a Jinja name; choose another name"]
    if not isinstance(raw, Mapping):
        return None, [f"{where} must be a mapping like {{type: str, default: ...}}"]
    problems = [
        f"{where}: unknown key {key!r} (allowed: type, description, default)"
        for key in raw
        if key not in {"type", "description", "default"}
    ]
    type_ = raw.get("type")
    if type_ not in VARIABLE_TYPES:
        problems.append(f"{where}: type {type_!r} is not one of {', '.join(VARIABLE_TYPES)}")
        return None, problems
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > _MAX_DESCRIPTION:
        problems.append(f"{where}: description must be text of at most {_MAX_DESCRIPTION} chars")
        description = ""
    default = raw.get("default")
    if default is not None:
        wrong = type_problem(type_, default)
        if wrong is not None:
            problems.append(f"{where}: default does not match type {type_} ({wrong})")
            default = None
        else:
            default = _frozen(default)
    return VariableSpec(type_, description, default), problems


def _frozen(value: Any) -> Any:
    # Defaults live in frozen specs shared between requests: no mutable lists inside.
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
