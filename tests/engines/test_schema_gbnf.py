"""Schemas as GBNF: what the rules match is valid against the schema (checked with Python's
``re`` and ``json``), and the valid texts asked for match (rules as regexes: ``gbnf_regex``)."""

from __future__ import annotations

import datetime
import json
import re
import unicodedata
import uuid
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from modelgrid.engines.schema_gbnf import Rules, render
from modelgrid.protocol.json_schema import enforceable_schema
from tests.engines.gbnf_regex import compile_rule


def grammar(schema: Any) -> re.Pattern[str]:
    rules = Rules()
    render(rules, enforceable_schema(schema, "response_format"), "root")
    return compile_rule(rules.text())


def jtext(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# ECMA-262 patterns whose meaning Python's re shares for the characters a JSON string holds
PATTERNS = [
    "^[A-Z]{3}-[0-9]{4}$",
    "^\\d{3}(-\\d{2})?$",
    "^(red|green|blue)$",
    "[a-z]+@[a-z]+\\.com",  # unanchored: anywhere in the string
    "^a.c$",
    '^[^"\\\\]{2,4}$',
    '^say "hi"\\\\$',
    "^\\w+\\s\\w+$",
    "^(?:ab)+c?$",
    "^x{2,}$",
    "^[\\u00e0-\\u00ff]+$",
    "^日本.$",
    "^$",
    "^a|b$",
    "^a*?b+?$",
]
ECMA_SPACE = "[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"


def ecma_to_python(pattern: str) -> str:
    """The same pattern for Python's ``re``: ECMA-262's ``\\d \\w \\s`` classes spelled out
    (Python's match Unicode digits and letters), its ``\\uXXXX`` escapes as characters."""
    out = pattern.replace("\\d", "[0-9]").replace("\\w", "[A-Za-z0-9_]")
    out = out.replace("\\s", ECMA_SPACE)
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), out)


PRODUCIBLE = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_pattern_grammar_writes_only_matching_strings_and_all_of_them(
    pattern: str, data: st.DataObject
) -> None:
    rule = grammar({"type": "string", "pattern": pattern})
    python = ecma_to_python(pattern)
    wanted = data.draw(st.from_regex(python, alphabet=PRODUCIBLE))
    assume(all(unicodedata.category(c) not in ("Cc", "Cs") for c in wanted))
    assume(re.search(python, wanted))  # Python's '$' also matches before a final newline
    assert rule.fullmatch(jtext(wanted)), (pattern, wanted)
    other = data.draw(st.text(alphabet=PRODUCIBLE, max_size=8))
    if rule.fullmatch(jtext(other)) or rule.fullmatch(jtext(other) + " "):
        assert re.search(python, other), (pattern, other)


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        (
            {"type": "string", "minLength": 2, "maxLength": 3},
            ["ab", 'a"c', "日本語"],
            ["a", "abcd"],
        ),
        (
            {"type": "string", "format": "date"},
            ["2024-02-28", "1999-12-31"],
            ["2024-02-30", "24-1-1"],
        ),
        (
            {"type": "string", "format": "date-time"},
            ["2024-05-01T12:30:00Z", "2024-05-01T23:59:59.123+05:30"],
            ["2024-05-01 12:30:00Z", "2024-05-01T24:00:00Z"],
        ),
        ({"type": "string", "format": "time"}, ["08:00:00Z"], ["8:00:00Z", "08:00:00"]),
        ({"type": "string", "format": "uuid"}, [str(uuid.UUID(int=7))], ["1234"]),
        ({"enum": ["a", 1, None, [1, 2]]}, ["a", 1, None, [1, 2]], ["b", 2, [1]]),
        ({"const": {"k": "v"}}, [{"k": "v"}], [{"k": "w"}, {}]),
        (
            {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 9},
                "maxItems": 2,
            },
            [[], [1], [9, 1]],
            [[0], [1, 2, 3], [10]],
        ),
        ({"type": "array", "items": {"type": "boolean"}, "minItems": 2}, [[True, False]], [[True]]),
        ({"type": "array", "prefixItems": [{"type": "null"}, {"const": 1}]}, [[None, 1]], [[None]]),
        (
            {
                "type": "object",
                "properties": {
                    "a": {"type": "integer"},
                    "b": {"type": "string"},
                    "c": {"type": "null"},
                },
                "required": ["b"],
            },
            [{"b": ""}, {"a": 1, "b": "x"}, {"a": 1, "b": "x", "c": None}, {"b": "x", "c": None}],
            [{}, {"a": 1}, {"b": "x", "d": 1}, {"b": 1}],
        ),
        ({"type": "object", "additionalProperties": False}, [{}], [{"a": 1}]),
        (
            {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            [{}, {"x": 1, "y": 2}],
            [{"x": -1}, {"x": "1"}],
        ),
        ({"type": ["integer", "null"], "maximum": 3}, [None, 3, -2], [4, "3"]),
        ({"anyOf": [{"type": "boolean"}, {"const": "x"}]}, [True, "x"], ["y", None]),
    ],
)
def test_schema_grammars_match_what_is_valid_and_nothing_else(
    schema: dict[str, Any], valid: list[Any], invalid: list[Any]
) -> None:
    rule = grammar(schema)
    for value in valid:
        assert rule.fullmatch(jtext(value)), (schema, value)
    for value in invalid:
        assert not rule.fullmatch(jtext(value)), (schema, value)


@settings(max_examples=100, deadline=None)
@given(st.dates(min_value=datetime.date(1000, 1, 1)))
def test_date_format_writes_only_real_dates(day: datetime.date) -> None:
    rule = grammar({"type": "string", "format": "date"})
    text = jtext(day.isoformat())
    if rule.fullmatch(text):  # February 29 is left out: never in a year without one
        datetime.date.fromisoformat(day.isoformat())
    else:
        assert (day.month, day.day) == (2, 29)


def test_properties_are_written_in_declared_order_with_optional_ones_skippable() -> None:
    rule = grammar(
        {
            "type": "object",
            "properties": {"x": {"type": "boolean"}, "y": {"type": "boolean"}},
        }
    )
    for text in ("{}", '{"x": true}', '{"y": false}', '{"x": true, "y": false}'):
        assert rule.fullmatch(text), text
    assert not rule.fullmatch('{"y": false, "x": true}')
    assert not rule.fullmatch('{"x": true,}')
