"""GBNF grammars that constrain llama.cpp's decoding: JSON output and forced function calls.

- ``response_format`` ``json_object``: any JSON object; ``json_schema``: a value valid against
  the schema, every keyword of which is enforced (``protocol.json_schema``: the gateway has
  already refused the keywords a grammar cannot enforce; ``engines.schema_gbnf`` writes the
  rules).
- ``tool_choice`` ``required`` / a named function: one or more Qwen-format calls,
  ``<tool_call>\\n{"name": "<name>", "arguments": <object>}\\n</tool_call>``, the arguments
  following each forced function's ``parameters`` schema (any JSON object when it has none).

A helper of the llama.cpp engine, in pure Python: llama.cpp parses the text it returns.
"""

from __future__ import annotations

import json

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import InferenceRequest, ResponseFormatKind, Tool, ToolChoiceMode
from modelgrid.engines.schema_gbnf import Rules, render
from modelgrid.protocol.json_schema import enforceable_schema

MAX_GRAMMAR_CHARS = 200_000


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def response_format_grammar(request: InferenceRequest) -> str | None:
    """GBNF for the request's ``response_format`` (``None`` for free text).

    Raises:
        InvalidRequestError: the JSON schema cannot be enforced (``param="response_format"``;
            the gateway refuses such schemas first, see ``protocol.json_schema``).
    """
    fmt = request.sampling.response_format
    if fmt is None or fmt.kind is ResponseFormatKind.TEXT:
        return None
    rules = Rules()
    if fmt.kind is ResponseFormatKind.JSON_OBJECT:
        rules.add("root", rules.primitive("object"))
    else:
        render(rules, enforceable_schema(fmt.schema or {}, "response_format"), "root")
    return rules.text()


def tool_call_grammar(request: InferenceRequest) -> str | None:
    """GBNF forcing function calls for ``tool_choice`` ``required`` or a named function.

    Raises:
        InvalidRequestError: a forced function's ``parameters`` cannot be enforced
            (``param="tools"``; the gateway refuses them first, naming the function).
    """
    mode = request.tool_mode
    if mode is ToolChoiceMode.FUNCTION:
        assert request.tool_choice is not None
        tools = [t for t in request.tools if t.name == request.tool_choice.name]
    elif mode is ToolChoiceMode.REQUIRED:
        tools = list(request.tools)
    else:
        return None
    rules = Rules()
    alternatives = [_call_rule(rules, i, tool) for i, tool in enumerate(tools)]
    rules.add("call", '"<tool_call>\\n" ( ' + " | ".join(alternatives) + ' ) "\\n</tool_call>"')
    many = request.parallel_tool_calls and mode is ToolChoiceMode.REQUIRED
    rules.add("root", 'call ( "\\n" call )*' if many else "call")
    return rules.text()


def _call_rule(rules: Rules, i: int, tool: Tool) -> str:
    if tool.parameters is None:
        args = rules.add(f"tool-{i}-args", rules.primitive("object"))
    else:
        args = render(rules, enforceable_schema(tool.parameters, "tools"), f"tool-{i}-args")
    head = _literal('{"name": ' + _literal(tool.name) + ', "arguments": ')
    return rules.add(f"tool-{i}", f'{head} {args} "}}"')


def request_grammar(request: InferenceRequest) -> str | None:
    """The grammar the whole output must match: forced calls first, else the response format.

    Raises:
        InvalidRequestError: see ``response_format_grammar`` and ``tool_call_grammar``; or
            the grammar is over ``MAX_GRAMMAR_CHARS``.
    """
    grammar = tool_call_grammar(request) or response_format_grammar(request)
    if grammar is not None and len(grammar) > MAX_GRAMMAR_CHARS:
        raise InvalidRequestError(
            "The JSON schema is too large to enforce by grammar "
            f"({len(grammar)} characters of grammar; at most {MAX_GRAMMAR_CHARS}).",
            param="tools" if request.tools else "response_format",
        )
    return grammar


__all__ = ["MAX_GRAMMAR_CHARS", "request_grammar", "response_format_grammar", "tool_call_grammar"]
