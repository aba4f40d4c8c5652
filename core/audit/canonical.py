"""Canonical JSON (RFC 8785, JCS): the one byte form of an event that is hashed and signed.

Serialisation is delegated to ``rfc8785`` (Trail of Bits; pure Python, no dependencies,
typed, used by sigstore-python), which gets the hard part right: numbers in the ECMAScript
shortest form and keys ordered by UTF-16 code units. This module narrows its input to plain
JSON values first: ``dict`` with ``str`` keys, ``list``, ``str``, ``int``, finite ``float``,
``bool`` and ``None`` (no tuples, sets, bytes, enums, dates, or integers beyond 2**53 - 1,
which JSON readers would round), so that what is hashed is exactly what a reader parses back.
"""

from __future__ import annotations

import json
import math
from typing import Any

import rfc8785

__all__ = ["CanonicalJSONError", "canonical_json", "canonical_json_bytes", "parse_canonical"]

_MAX_SAFE_INT = 2**53 - 1


class CanonicalJSONError(ValueError):
    """The value is not plain JSON (or not canonical, when parsing)."""


def _check(value: Any, path: str) -> None:
    # Exact type checks: a bool is an int and an IntEnum is both, but neither is what the
    # reader of the JSON gets back, so only the plain types pass.
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return
    if kind is int:
        if abs(value) > _MAX_SAFE_INT:
            msg = f"{path}: integer {value} is beyond ±(2**53 - 1)"
            raise CanonicalJSONError(msg)
        return
    if kind is float:
        if not math.isfinite(value):
            msg = f"{path}: {value} is not a JSON number"
            raise CanonicalJSONError(msg)
        return
    if kind is list:
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                msg = f"{path}: key {key!r} is not a string"
                raise CanonicalJSONError(msg)
            _check(item, f"{path}.{key}")
        return
    msg = f"{path}: {kind.__name__} is not a JSON value"
    raise CanonicalJSONError(msg)


def canonical_json_bytes(value: Any) -> bytes:
    """The RFC 8785 encoding of ``value`` as UTF-8 bytes; raises ``CanonicalJSONError``."""
    _check(value, "$")
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:  # lone surrogates in a string
        raise CanonicalJSONError(f"$: {exc}") from exc


def canonical_json(value: Any) -> str:
    """The RFC 8785 encoding of ``value`` as text."""
    return canonical_json_bytes(value).decode("utf-8")


def _reject_constant(name: str) -> Any:
    msg = f"{name} is not a JSON number"
    raise CanonicalJSONError(msg)


def parse_canonical(text: str) -> Any:
    """Parse JSON that must already be canonical; raises ``CanonicalJSONError`` otherwise."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise CanonicalJSONError(f"not valid JSON: {exc}") from exc
    if canonical_json(value) != text:
        msg = "JSON is valid but not in canonical (RFC 8785) form"
        raise CanonicalJSONError(msg)
    return value
