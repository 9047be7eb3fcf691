"""GBNF for response_format and forced tool calls; llama.cpp's own parser reads them and its
grammar sampler accepts exactly the valid texts (model)."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from typing import Any

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

PLAIN = Tool("plain", None, None)
WEATHER = Tool(
    "get_weather",
    "Weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ODD = Tool(
    "odd", None, {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}
)
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
    text = "\n".join(schema.values())
    assert '"\\"name\\"" space ":"' in text and '"\\"age\\"" space ":" space integer' in text


@pytest.mark.parametrize(
    "schema", [{"type": "integer", "multipleOf": 2}, {"$ref": "#/$defs/missing"}]
)
def test_schema_the_grammar_cannot_enforce_is_a_400(schema: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidRequestError) as exc:
        response_format_grammar(fmt(ResponseFormatKind.JSON_SCHEMA, schema))
    assert exc.value.param == "response_format"


def test_required_allows_any_declared_function_and_several_calls() -> None:
    both = InferenceRequest(
        "r",
        "m",
        messages=[],
        tools=(WEATHER, PLAIN),
        tool_choice=ToolChoice(ToolChoiceMode.REQUIRED),
    )
    g = rules(tool_call_grammar(both) or "")
    assert g["root"] == 'call ( "\\n" call )*'
    assert g["call"].startswith('"<tool_call>\\n" ( tool-0 | tool-1 )')
    assert '\\"name\\": \\"get_weather\\"' in g["tool-0"] and "tool-0-args" in g["tool-0"]
    assert g["tool-1-args"] == "object"  # no parameters: any object
    single = rules(tool_call_grammar(tools(ToolChoiceMode.FUNCTION, "get_weather")) or "")
    assert single["root"] == "call"


def test_forced_parameters_the_grammar_cannot_enforce_are_refused_not_loosened() -> None:
    """They used to become "any object": a promise silently dropped."""
    with pytest.raises(InvalidRequestError) as exc:
        tool_call_grammar(tools(ToolChoiceMode.REQUIRED))
    assert exc.value.param == "tools" and "multipleOf" in exc.value.message
    assert tool_call_grammar(tools(ToolChoiceMode.FUNCTION, "get_weather"))  # odd not forced


def test_named_function_allows_only_it_and_one_call() -> None:
    g = rules(tool_call_grammar(tools(ToolChoiceMode.FUNCTION, "get_weather")) or "")
    assert g["root"] == "call" and "tool-1" not in g
    assert "get_weather" in g["tool-0"]


def test_forced_calls_take_precedence_over_response_format() -> None:
    r = tools(ToolChoiceMode.FUNCTION, "get_weather")
    r.sampling = SamplingParams(response_format=ResponseFormat(ResponseFormatKind.JSON_OBJECT))
    assert "call" in rules(request_grammar(r) or "")


# schema -> (texts llama.cpp's grammar sampler must accept, texts it must refuse)
MATCHING: dict[str, tuple[dict[str, Any], list[str], list[str]]] = {
    "bounded integer": (
        {"type": "integer", "minimum": 1, "maximum": 9},
        ["1", "9", "5 "],
        ["0", "10", "1000000000000000", "-1", "05"],
    ),
    "bounded number": (
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        ["0.5", "1", "0.001", "1.0"],
        ["0", "1.5", "-0.5", "2"],
    ),
    "enum and pattern": (
        {
            "type": "object",
            "properties": {
                "digit": {"type": "integer", "minimum": 1, "maximum": 9},
                "color": {"enum": ["red", "green"]},
                "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
            },
            "required": ["digit", "color", "code"],
            "additionalProperties": False,
        },
        ['{"digit": 3, "color": "red", "code": "AB-123"}'],
        [
            '{"digit": 12, "color": "red", "code": "AB-123"}',
            '{"digit": 3, "color": "blue", "code": "AB-123"}',
            '{"digit": 3, "color": "red", "code": "ab-123"}',
            '{"digit": 3, "color": "red"}',
            '{"digit": 3, "color": "red", "code": "AB-123", "x": 1}',
        ],
    ),
    "recursive": (
        SCHEMA
        | {
            "properties": {
                **SCHEMA["properties"],
                "kids": {"type": "array", "items": {"$ref": "#"}},
            }
        },
        ['{"name": "a", "age": 1, "kids": [{"name": "b", "age": 2}]}'],
        ['{"name": "a", "age": 1, "kids": [{"name": "b"}]}'],
    ),
    "formats": (
        {
            "type": "array",
            "prefixItems": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "uuid"},
            ],
        },
        ['["2024-05-01T12:00:00Z", "123e4567-e89b-12d3-a456-426614174000"]'],
        ['["2024-05-01", "123e4567-e89b-12d3-a456-426614174000"]'],
    ),
    "strings": (
        {"type": "string", "minLength": 1, "maxLength": 3},
        ['"a"', '"日本語"', '"a\\"b"', '"a\\nb"'],
        ['""', '"abcd"', '"a\nb"'],
    ),
}


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    import llama_cpp

    from modelgrid.config import Settings
    from modelgrid.engines.catalog import CATALOG

    path = Settings().models_dir / CATALOG["qwen2.5-coder-0.5b-instruct"].filename
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def _allowed(sampler: Any, token: int) -> bool:
    import llama_cpp

    data = (llama_cpp.llama_token_data * 1)()
    data[0].id, data[0].logit, data[0].p = token, 0.0, 0.0
    candidates = llama_cpp.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
    return math.isfinite(data[0].logit)


def sampler_accepts(llm: Any, gbnf: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the model write ``text`` and then stop
    (``text`` fed a character at a time, each as the tokens it is spelled with)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, gbnf.encode(), b"root")
    assert sampler, gbnf
    try:
        for ch in text:
            for token in llm.tokenize(ch.encode(), add_bos=False, special=False):
                if not _allowed(sampler, token):
                    return False
                llama_cpp.llama_sampler_accept(sampler, token)
        return _allowed(sampler, llm.token_eos())
    finally:
        llama_cpp.llama_sampler_free(sampler)


@pytest.mark.model
def test_llama_cpp_accepts_every_grammar(vocab: Any) -> None:
    import llama_cpp

    for request in (
        fmt(ResponseFormatKind.JSON_OBJECT),
        fmt(ResponseFormatKind.JSON_SCHEMA, SCHEMA),
        tools(ToolChoiceMode.FUNCTION, "get_weather"),
        *(fmt(ResponseFormatKind.JSON_SCHEMA, s) for s, _, _ in MATCHING.values()),
    ):
        gbnf = request_grammar(request) or ""
        sampler = llama_cpp.llama_sampler_init_grammar(vocab._model.vocab, gbnf.encode(), b"root")
        assert sampler, gbnf
        llama_cpp.llama_sampler_free(sampler)


@pytest.mark.model
@pytest.mark.parametrize("case", sorted(MATCHING))
def test_llama_cpp_grammar_admits_valid_texts_only(vocab: Any, case: str) -> None:
    schema, valid, invalid = MATCHING[case]
    gbnf = response_format_grammar(fmt(ResponseFormatKind.JSON_SCHEMA, schema)) or ""
    for text in valid:
        assert sampler_accepts(vocab, gbnf, text), text
    for text in invalid:
        assert not sampler_accepts(vocab, gbnf, text), text


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 1_000_000_000},
        {"type": "object", "properties": {"xs": {"type": "array", "maxItems": 10**6}}},
        {"type": "array", "prefixItems": [{"type": "string", "maxLength": 5000}]},
    ],
)
def test_huge_counted_bounds_are_refused_before_conversion(schema: dict) -> None:  # type: ignore[type-arg]
    """The converter unrolls counts: minLength 1e9 once took a server to 23 GB and an OOM kill."""
    with pytest.raises(InvalidRequestError) as exc:
        response_format_grammar(fmt(ResponseFormatKind.JSON_SCHEMA, schema))
    assert exc.value.param == "response_format"
    assert "larger than 1000" in exc.value.message and "/" in exc.value.message


def test_bounds_within_the_limit_still_convert() -> None:
    grammar = response_format_grammar(
        fmt(ResponseFormatKind.JSON_SCHEMA, {"type": "string", "maxLength": 1000})
    )
    assert grammar is not None and len(grammar) < 200_000
