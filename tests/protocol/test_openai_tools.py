"""Wire <-> core pieces of function calling and response_format (no server)."""

from __future__ import annotations

import pytest

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import ResponseFormatKind, ToolCallDelta
from modelgrid.protocol.openai.formats import check_schema, response_format_in
from modelgrid.protocol.openai.tools import argument_fragments, tool_call_delta_dicts


@pytest.mark.parametrize(
    "arguments",
    ["{}", '{"city": "Paris"}', '{"a": [1, 2, {"b": "x, y: z"}], "c": null}', '{"q":"日本"}'],
)
def test_argument_fragments_concatenate_exactly(arguments: str) -> None:
    pieces = argument_fragments(arguments)
    assert "".join(pieces) == arguments and all(pieces)


def test_first_delta_of_a_call_has_id_name_and_empty_arguments() -> None:
    entries = tool_call_delta_dicts(ToolCallDelta(1, "call_x", "f", '{"a": 1}'))
    assert entries == [
        {
            "index": 1,
            "id": "call_x",
            "type": "function",
            "function": {"name": "f", "arguments": ""},
        },
        {"index": 1, "function": {"arguments": '{"a": '}},
        {"index": 1, "function": {"arguments": "1}"}},
    ]
    assert tool_call_delta_dicts(ToolCallDelta(0, arguments="}")) == [
        {"index": 0, "function": {"arguments": "}"}}
    ]


@pytest.mark.parametrize(
    "schema",
    [
        {},
        True,
        {"type": ["string", "null"]},
        {"type": "object", "properties": {"a": {"type": "array", "items": {"$ref": "#/$defs/x"}}}},
        {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]},
        {"type": "object", "additionalProperties": False, "required": ["a"]},
    ],
)
def test_well_formed_schemas_pass(schema: object) -> None:
    check_schema(schema, "p")


@pytest.mark.parametrize(
    "schema",
    [
        [1],
        {"type": "strng"},
        {"properties": []},
        {"properties": {"a": 5}},
        {"required": "a"},
        {"anyOf": []},
        {"items": "x"},
        {"minLength": -1},
        {"maximum": "3"},
        {"enum": []},
        {"pattern": "(("},
    ],
)
def test_malformed_schemas_are_rejected_with_the_param(schema: object) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        check_schema(schema, "tools[0].function.parameters")
    assert exc.value.param == "tools[0].function.parameters"


def test_response_format_in() -> None:
    assert response_format_in(None) is None
    assert response_format_in({"type": "text"}) is None
    assert response_format_in({"type": "json_object"}).kind is ResponseFormatKind.JSON_OBJECT  # type: ignore[union-attr]
    fmt = response_format_in(
        {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}
    )
    assert fmt is not None and fmt.schema == {"type": "object"} and fmt.name == "n"
