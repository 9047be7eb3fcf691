"""GBNF for response_format and forced tool calls; llama.cpp's own parser checks them (model)."""

from __future__ import annotations

import pytest

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import (
    InferenceRequest,
    ResponseFormat,
    ResponseFormatKind,
    SamplingParams,
    Tool,
    ToolChoice,
    ToolChoiceMode,
)
from modelgrid.engines.grammar import request_grammar, response_format_grammar, tool_call_grammar

WEATHER = Tool(
    "get_weather",
    "Weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ODD = Tool("odd", None, {"type": "string", "pattern": "unanchored"})  # the converter refuses it
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
    },
    "required": ["name", "age"],
    "$defs": {"tag": {"type": "string", "enum": ["a", "b"]}},
}


def fmt(kind: ResponseFormatKind, schema: dict | None = None) -> InferenceRequest:  # type: ignore[type-arg]
    sampling = SamplingParams(response_format=ResponseFormat(kind, schema, "x"))
    return InferenceRequest("r", "m", messages=[], sampling=sampling)


def tools(mode: ToolChoiceMode, name: str | None = None, parallel: bool = True) -> InferenceRequest:
    return InferenceRequest(
        "r",
        "m",
        messages=[],
        tools=(WEATHER, ODD),
        tool_choice=ToolChoice(mode, name),
        parallel_tool_calls=parallel,
    )


def rules(gbnf: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in gbnf.splitlines())


def test_no_grammar_for_free_text_and_auto() -> None:
    assert request_grammar(InferenceRequest("r", "m", messages=[])) is None
    assert request_grammar(fmt(ResponseFormatKind.TEXT)) is None
    assert request_grammar(tools(ToolChoiceMode.AUTO)) is None
    assert request_grammar(tools(ToolChoiceMode.NONE)) is None


def test_json_object_and_schema_grammars() -> None:
    obj = rules(response_format_grammar(fmt(ResponseFormatKind.JSON_OBJECT)) or "")
    assert obj["root"] == "object"
    assert "\\x00-\\x1F" in obj["char"]  # raw control characters are not valid JSON strings
    schema = rules(response_format_grammar(fmt(ResponseFormatKind.JSON_SCHEMA, SCHEMA)) or "")
    assert '"\\"name\\""' in schema["name-kv"] and "integer" in schema["age-kv"]


@pytest.mark.parametrize(
    "schema", [{"type": "string", "pattern": "no-anchors"}, {"$ref": "#/$defs/missing"}]
)
def test_schema_the_converter_cannot_enforce_is_a_400(schema: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidRequestError) as exc:
        response_format_grammar(fmt(ResponseFormatKind.JSON_SCHEMA, schema))
    assert exc.value.param == "response_format"


def test_required_allows_any_declared_function_and_several_calls() -> None:
    g = rules(tool_call_grammar(tools(ToolChoiceMode.REQUIRED)) or "")
    assert g["root"] == 'call ( "\\n" call )*'
    assert g["call"].startswith('"<tool_call>\\n" ( tool-0 | tool-1 )')
    assert '\\"name\\": \\"get_weather\\"' in g["tool-0"] and "tool-0-args" in g["tool-0"]
    assert g["tool-1-args"] == "object"  # unconvertible parameters: any object
    single = rules(tool_call_grammar(tools(ToolChoiceMode.REQUIRED, parallel=False)) or "")
    assert single["root"] == "call"


def test_named_function_allows_only_it_and_one_call() -> None:
    g = rules(tool_call_grammar(tools(ToolChoiceMode.FUNCTION, "get_weather")) or "")
    assert g["root"] == "call" and "tool-1" not in g
    assert "get_weather" in g["tool-0"]


def test_forced_calls_take_precedence_over_response_format() -> None:
    r = tools(ToolChoiceMode.REQUIRED)
    r.sampling = SamplingParams(response_format=ResponseFormat(ResponseFormatKind.JSON_OBJECT))
    assert "call" in rules(request_grammar(r) or "")


@pytest.mark.model
def test_llama_cpp_accepts_every_grammar() -> None:
    import llama_cpp

    from modelgrid.config import Settings
    from modelgrid.engines.catalog import CATALOG

    path = Settings().models_dir / CATALOG["qwen2.5-coder-0.5b-instruct"].filename
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        for request in (
            fmt(ResponseFormatKind.JSON_OBJECT),
            fmt(ResponseFormatKind.JSON_SCHEMA, SCHEMA),
            tools(ToolChoiceMode.REQUIRED),
            tools(ToolChoiceMode.FUNCTION, "odd"),
        ):
            gbnf = request_grammar(request) or ""
            sampler = llama_cpp.llama_sampler_init_grammar(
                vocab._model.vocab, gbnf.encode(), b"root"
            )
            assert sampler, gbnf
            llama_cpp.llama_sampler_free(sampler)
    finally:
        vocab.close()


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 1_000_000_000},
        {"type": "object", "properties": {"xs": {"type": "array", "maxItems": 10**6}}},
        {"type": "array", "items": [{"type": "string", "maxLength": 5000}]},
    ],
)
def test_huge_counted_bounds_are_refused_before_conversion(schema: dict) -> None:  # type: ignore[type-arg]
    """The converter unrolls counts: minLength 1e9 once took a server to 23 GB and an OOM kill."""
    with pytest.raises(InvalidRequestError) as exc:
        response_format_grammar(fmt(ResponseFormatKind.JSON_SCHEMA, schema))
    assert exc.value.param == "response_format"
    assert "larger than 1000" in exc.value.message


def test_bounds_within_the_limit_still_convert() -> None:
    grammar = response_format_grammar(
        fmt(ResponseFormatKind.JSON_SCHEMA, {"type": "string", "maxLength": 1000})
    )
    assert grammar is not None and len(grammar) < 200_000
