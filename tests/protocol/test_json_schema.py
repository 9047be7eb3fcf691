"""Every JSON Schema keyword is enforced or refused by name and place, never ignored."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from modelgrid.core.errors import InvalidRequestError, UnsupportedParameterError
from modelgrid.core.types import Tool, ToolChoice, ToolChoiceMode
from modelgrid.protocol import schema_nodes as js
from modelgrid.protocol.json_schema import check_forced_tools, enforceable_schema

P = "response_format"


def refused(schema: Any) -> UnsupportedParameterError:
    with pytest.raises(UnsupportedParameterError) as exc:
        enforceable_schema(schema, P)
    assert exc.value.param == P and exc.value.status == 400
    return exc.value


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("multipleOf", 3),
        ("uniqueItems", True),
        ("contains", {"type": "integer"}),
        ("minContains", 1),
        ("maxContains", 2),
        ("not", {"type": "string"}),
        ("if", {"type": "string"}),
        ("then", {"type": "string"}),
        ("else", {"type": "string"}),
        ("patternProperties", {"^a": {"type": "string"}}),
        ("propertyNames", {"maxLength": 3}),
        ("minProperties", 1),
        ("maxProperties", 2),
        ("dependentRequired", {"a": ["b"]}),
        ("dependentSchemas", {"a": {"required": ["b"]}}),
        ("dependencies", {"a": ["b"]}),
        ("unevaluatedProperties", False),
        ("unevaluatedItems", False),
        ("additionalItems", False),
        ("$anchor", "here"),
        ("$dynamicRef", "#here"),
        ("nullable", True),
        ("maxLenght", 3),  # a typo is no annotation: it would constrain nothing
    ],
)
def test_each_refused_keyword_is_named_with_its_path(keyword: str, value: Any) -> None:
    schema = {"type": "object", "properties": {"inner": {keyword: value}}}
    exc = refused(schema)
    assert f"'{keyword}'" in exc.message
    assert f"/properties/inner/{keyword}" in exc.message
    assert exc.code == "unsupported_parameter"


@pytest.mark.parametrize(
    ("schema", "keyword", "where"),
    [
        ({"type": "string", "format": "email"}, "format", "/format"),
        ({"type": "string", "minimum": 3}, "minimum", "/minimum"),  # not a string keyword
        ({"type": "integer", "maxLength": 3}, "maxLength", "/maxLength"),
        ({"$ref": "#/$defs/a", "maxLength": 3, "$defs": {"a": {}}}, "maxLength", "/maxLength"),
        ({"anyOf": [{"type": "string"}], "minLength": 1}, "minLength", "/minLength"),
        ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "allOf", "/allOf"),
        ({"enum": ["a", "bb"], "maxLength": 1}, "maxLength", "/maxLength"),
        ({"type": "string", "pattern": "^a+$", "maxLength": 3}, "maxLength", "/maxLength"),
        ({"type": "string", "pattern": "(?=a)a"}, "pattern", "/pattern"),
        ({"type": "string", "pattern": "(a)\\1"}, "pattern", "/pattern"),
        ({"type": "string", "pattern": "\\bword"}, "pattern", "/pattern"),
        ({"type": "string", "pattern": "a{2000}"}, "pattern", "/pattern"),
        ({"type": "array", "prefixItems": [{}], "minItems": 1}, "minItems", "/minItems"),
        ({"type": "string", "maxLength": 5000}, "maxLength", "/maxLength"),
        ({"$ref": "https://example.com/s.json"}, "$ref", "/$ref"),
        ({"type": "integer", "minimum": 10**40}, "minimum", "/minimum"),
    ],
)
def test_what_the_grammar_cannot_combine_is_refused(
    schema: dict[str, Any], keyword: str, where: str
) -> None:
    exc = refused(schema)
    assert f"'{keyword}'" in exc.message and f"'{where}'" in exc.message


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "minimum": 1, "maximum": 9},
        {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
        {"type": "number", "minimum": 0.5, "exclusiveMaximum": 2.25},
        {"enum": ["a", 1, None, [1], {"k": "v"}]},
        {"const": "fixed"},
        {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
        {"type": "string", "minLength": 2, "maxLength": 5},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
        {"type": "object", "properties": {"a": {}}, "required": ["a"]},
        {"type": "object", "additionalProperties": False},
        {"type": "object", "additionalProperties": {"type": "integer"}},
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
        {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        {"allOf": [{"type": "string"}]},
        {"$ref": "#/$defs/a", "$defs": {"a": {"type": "boolean"}}},
        {"$ref": "#/definitions/a", "definitions": {"a": {"type": "boolean"}}},
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
        {"type": "string", "format": "time"},
        {"type": "string", "format": "uuid"},
        {"type": ["string", "null"], "maxLength": 3},
        {
            "title": "T",
            "description": "d",
            "default": 1,
            "examples": [1],
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://example.com/x",
            "$comment": "c",
            "deprecated": False,
            "readOnly": True,
            "writeOnly": False,
            "x-vendor": {"anything": 1},
            "type": "integer",
        },
        True,
        {},
    ],
)
def test_enforced_keywords_and_annotations_are_accepted(schema: Any) -> None:
    enforceable_schema(schema, P)


def test_integer_bounds_become_inclusive_integers() -> None:
    assert enforceable_schema({"type": "integer", "minimum": 1, "maximum": 9}, P).root == (
        js.Integer(1, 9)
    )
    root = enforceable_schema({"type": "integer", "exclusiveMinimum": 1.5, "maximum": 9.7}, P)
    assert root.root == js.Integer(2, 9)
    root = enforceable_schema({"type": "integer", "minimum": 0, "exclusiveMinimum": 0}, P)
    assert root.root == js.Integer(1, None)


def test_number_bounds_keep_their_fractions_and_openness() -> None:
    root = enforceable_schema({"type": "number", "minimum": 0.1, "exclusiveMaximum": 2}, P).root
    assert root == js.Number(Decimal("0.1"), False, Decimal(2), True)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "minimum": 5, "maximum": 2},
        {"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2},
        {"type": "number", "exclusiveMinimum": 1, "maximum": 1},
        {"type": "string", "minLength": 5, "maxLength": 2},
        {"type": "array", "items": False, "minItems": 1},
        {"enum": [1, 2], "type": "string"},
        {"type": "object", "required": ["b"], "additionalProperties": False},
        {"$ref": "#/$defs/missing"},
        {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        {"type": "string", "pattern": "^\\n+$"},  # only control characters match
        False,
        {"type": "object", "properties": {"n": "not a schema"}},
    ],
)
def test_schemas_no_value_satisfies_or_malformed_are_a_400(schema: Any) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        enforceable_schema(schema, P)
    assert exc.value.param == P


def test_required_properties_not_declared_are_written_with_any_value() -> None:
    root = enforceable_schema({"type": "object", "required": ["a"]}, P).root
    assert root == js.Object((js.Property("a", js.AnyValue(), True),))


def test_recursion_through_a_value_is_fine() -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            }
        },
        "$ref": "#/$defs/node",
    }
    schema = enforceable_schema(tree, P)
    assert isinstance(schema.root, js.Ref) and schema.root.name in schema.defs


def test_deep_nesting_is_refused_not_a_crash() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(200):
        schema = {"type": "array", "items": schema}
    with pytest.raises(InvalidRequestError):
        enforceable_schema(schema, P)


WEATHER = {"type": "object", "properties": {"days": {"type": "integer", "multipleOf": 7}}}


def test_forced_tools_are_checked_and_auto_ones_are_not() -> None:
    tools = [Tool("free", None, {"type": "object"}), Tool("weather", None, WEATHER)]

    def param(i: int) -> str:
        return f"tools[{i}].function.parameters"

    check_forced_tools(tools, ToolChoice(ToolChoiceMode.AUTO), param)
    check_forced_tools(tools, ToolChoice(ToolChoiceMode.FUNCTION, "free"), param)
    for choice in (
        ToolChoice(ToolChoiceMode.REQUIRED),
        ToolChoice(ToolChoiceMode.FUNCTION, "weather"),
    ):
        with pytest.raises(UnsupportedParameterError) as exc:
            check_forced_tools(tools, choice, param)
        assert exc.value.param == "tools[1].function.parameters"
        assert (
            "'multipleOf'" in exc.value.message
            and "/properties/days/multipleOf" in exc.value.message
        )
