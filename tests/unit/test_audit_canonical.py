"""Canonical JSON (RFC 8785) of audit events: one byte form, and only plain JSON in it."""

from __future__ import annotations

import enum
import json
import math

import pytest

from core.audit.canonical import (
    CanonicalJSONError,
    canonical_json,
    canonical_json_bytes,
    parse_canonical,
)


def test_keys_are_sorted_and_there_is_no_whitespace() -> None:
    event = {"b": [1, 2, {"z": None, "a": True}], "a": "x", "c": {"y": False}}
    assert canonical_json(event) == '{"a":"x","b":[1,2,{"a":true,"z":null}],"c":{"y":false}}'


def test_insertion_order_does_not_change_the_bytes() -> None:
    one = {"tenant": "t1", "model": "m", "counts": {"PERSON": 2, "EMAIL": 1}}
    two = {"counts": {"EMAIL": 1, "PERSON": 2}, "model": "m", "tenant": "t1"}
    assert canonical_json_bytes(one) == canonical_json_bytes(two)


def test_keys_sort_by_utf16_code_units() -> None:
    # RFC 8785 3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16,
    # though after it by code point.
    assert canonical_json({"\ufb33": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ufb33":1}'


def test_text_is_utf8_not_escaped() -> None:
    assert canonical_json_bytes({"city": "Lisboa é ü 😀"}) == ('{"city":"Lisboa é ü 😀"}'.encode())
    assert canonical_json({"s": 'q"\\\n\t\x01'}) == '{"s":"q\\"\\\\\\n\\t\\u0001"}'


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (123.456, "123.456"),
        (2**53 - 1, "9007199254740991"),
    ],
)
def test_numbers_take_the_ecmascript_form(number: float, text: str) -> None:
    assert canonical_json([number]) == f"[{text}]"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_rejected(bad: float) -> None:
    with pytest.raises(CanonicalJSONError, match="not a JSON number"):
        canonical_json({"timing": bad})


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": (1, 2)}, r"\$\.a: tuple"),
        ({"a": {1, 2}}, r"\$\.a: set"),
        ({"a": b"raw"}, r"\$\.a: bytes"),
        ({"a": [1, Colour.RED]}, r"\$\.a\[1\]: Colour"),
        ({1: "x"}, r"key 1 is not a string"),
        ({"a": 2**53}, r"beyond"),
        ({"a": -(2**60)}, r"beyond"),
        ({"a": "\ud800"}, r"\$"),
    ],
)
def test_anything_but_plain_json_is_rejected(value: object, where: str) -> None:
    with pytest.raises(CanonicalJSONError, match=where):
        canonical_json(value)


def test_output_is_a_fixed_point_of_parse_and_serialise() -> None:
    event = {"scores": [0.1, 1e-9, 12345.678], "n": 3, "ok": True, "none": None, "s": "é"}
    text = canonical_json(event)
    assert canonical_json(json.loads(text)) == text
    assert parse_canonical(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    ['{"b":1,"a":2}', '{"a": 1}', '{"a":1.0}', '{"a":NaN}', '{"a":1,"a":2}', "{"],
)
def test_parse_canonical_rejects_other_forms(text: str) -> None:
    with pytest.raises(CanonicalJSONError):
        parse_canonical(text)
