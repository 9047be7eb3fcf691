"""GBNF grammars that constrain llama.cpp's decoding: JSON output and forced function calls.

- ``response_format`` ``json_object``: any JSON object; ``json_schema``: a value valid against
  the schema (converted by llama-cpp-python's JSON-Schema-to-GBNF converter).
- ``tool_choice`` ``required`` / a named function: one or more Qwen-format calls,
  ``<tool_call>\\n{"name": "<name>", "arguments": <object>}\\n</tool_call>``, the arguments
  following each function's ``parameters`` schema (any JSON object where the schema cannot be
  converted: the call still parses, the arguments are not checked).

A helper of the llama.cpp engine: it uses llama-cpp-python's pure-Python schema converter,
imported when a grammar is first built, so importing this module stays cheap.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import InferenceRequest, ResponseFormatKind, Tool, ToolChoiceMode

# The converter's string characters admit raw control characters, which strict JSON parsers
# (Python's json, JavaScript's JSON.parse) reject; exclude them as llama.cpp's own converter does.
_LOOSE_CHAR = '[^"\\\\]'
_STRICT_CHAR = '[^"\\\\\\x7F\\x00-\\x1F]'
_ANY_OBJECT: dict[str, Any] = {"type": "object"}
# The converter unrolls counted repetition ({"minLength": n} becomes n copies of a rule), so
# large bounds would build grammars of unbounded size: refuse them before converting.
MAX_SCHEMA_BOUND = 1000
_BOUND_KEYS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
MAX_GRAMMAR_CHARS = 200_000


def check_bounds(schema: Any, path: str = "schema") -> None:
    """Refuse counted bounds above ``MAX_SCHEMA_BOUND`` anywhere in ``schema``.

    Raises:
        ValueError: names the first offending keyword and its path.
    """
    if isinstance(schema, dict):
        for key in _BOUND_KEYS:
            value = schema.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_SCHEMA_BOUND:
                raise ValueError(
                    f"{path}.{key} = {value} is larger than {MAX_SCHEMA_BOUND}, the most a "
                    "grammar can enforce"
                )
        for key, value in schema.items():
            check_bounds(value, f"{path}.{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            check_bounds(value, f"{path}[{i}]")


class _Builder:
    """One schema converter collecting the rules of several schemas under distinct names."""

    def __init__(self) -> None:
        from llama_cpp.llama_grammar import SchemaConverter

        self._conv = SchemaConverter(  # type: ignore[no-untyped-call]
            prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
        )
        self._extra: dict[str, str] = {}
        self._n = 0

    def schema(self, schema: dict[str, Any], name: str) -> str:
        """Add the rules for ``schema``; returns its rule's name.

        Raises:
            Exception: anything the converter raises for a schema it cannot convert.
        """
        self._n += 1
        check_bounds(schema)
        resolved = self._conv.resolve_refs(copy.deepcopy(schema), f"schema{self._n}")
        return str(self._conv.visit(resolved, name))  # type: ignore[no-untyped-call]

    def rule(self, name: str, body: str) -> None:
        self._extra[name] = body

    def text(self) -> str:
        rules: dict[str, str] = dict(self._conv._rules)
        if "char" in rules:
            rules["char"] = rules["char"].replace(_LOOSE_CHAR, _STRICT_CHAR, 1)
        rules.update(self._extra)
        return "\n".join(f"{k} ::= {v}" for k, v in sorted(rules.items()))


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def response_format_grammar(request: InferenceRequest) -> str | None:
    """GBNF for the request's ``response_format`` (``None`` for free text).

    Raises:
        InvalidRequestError: the JSON schema cannot be turned into a grammar
            (``param="response_format"``).
    """
    fmt = request.sampling.response_format
    if fmt is None or fmt.kind is ResponseFormatKind.TEXT:
        return None
    schema = _ANY_OBJECT if fmt.kind is ResponseFormatKind.JSON_OBJECT else fmt.schema or {}
    builder = _Builder()
    try:
        builder.schema(schema, "")
    except Exception as exc:  # the converter raises assertion, key, type and value errors
        raise InvalidRequestError(
            f"The JSON schema of 'response_format' cannot be enforced: {exc}",
            param="response_format",
        ) from exc
    return builder.text()


def tool_call_grammar(request: InferenceRequest) -> str | None:
    """GBNF forcing function calls for ``tool_choice`` ``required`` or a named function."""
    mode = request.tool_mode
    if mode is ToolChoiceMode.FUNCTION:
        assert request.tool_choice is not None
        tools = [t for t in request.tools if t.name == request.tool_choice.name]
    elif mode is ToolChoiceMode.REQUIRED:
        tools = list(request.tools)
    else:
        return None
    builder = _Builder()
    alternatives = [_call_rule(builder, i, tool) for i, tool in enumerate(tools)]
    builder.rule("call", '"<tool_call>\\n" ( ' + " | ".join(alternatives) + ' ) "\\n</tool_call>"')
    many = request.parallel_tool_calls and mode is ToolChoiceMode.REQUIRED
    builder.rule("root", 'call ( "\\n" call )*' if many else "call")
    return builder.text()


def _call_rule(builder: _Builder, i: int, tool: Tool) -> str:
    schema = tool.parameters or _ANY_OBJECT
    try:
        _Builder().schema(schema, "probe")  # a failed conversion leaves dangling rules behind
    except Exception:
        schema = _ANY_OBJECT
    args = builder.schema(schema, f"tool-{i}-args")
    head = _literal('{"name": ' + _literal(tool.name) + ', "arguments": ')
    builder.rule(f"tool-{i}", f'{head} {args} "}}"')
    return f"tool-{i}"


def request_grammar(request: InferenceRequest) -> str | None:
    """The grammar the whole output must match: forced calls first, else the response format.

    Raises:
        InvalidRequestError: see ``response_format_grammar``.
    """
    grammar = tool_call_grammar(request) or response_format_grammar(request)
    if grammar is not None and len(grammar) > MAX_GRAMMAR_CHARS:
        raise InvalidRequestError(
            "The JSON schema is too large to enforce by grammar "
            f"({len(grammar)} characters of grammar; at most {MAX_GRAMMAR_CHARS}).",
            param="tools" if request.tools else "response_format",
        )
    return grammar


__all__ = ["request_grammar", "response_format_grammar", "tool_call_grammar"]
