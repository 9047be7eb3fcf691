"""Function calling on the OpenAI wire <-> core.

Request side (https://platform.openai.com/docs/api-reference/chat/create): ``tools``,
``tool_choice`` (``none`` | ``auto`` | ``required`` | ``{"type": "function", "function":
{"name": …}}``) and the ``tool_calls`` of assistant messages. Response side: the ``tool_calls``
of a message, and the streaming deltas (https://platform.openai.com/docs/api-reference/chat-streaming):
a call's first delta carries ``index``, ``id``, ``type``, ``function.name`` and
``function.arguments: ""``; the following ones carry ``index`` and pieces of the arguments,
which concatenate to their JSON text.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import Tool, ToolCall, ToolCallDelta, ToolChoice, ToolChoiceMode
from modelgrid.protocol.openai.formats import check_schema
from modelgrid.protocol.openai.models import ToolCallIn, ToolIn

_SEPARATOR = re.compile(r"[,:]\s*")


def tools_in(tools: list[ToolIn] | None) -> tuple[Tool, ...]:
    """The declared functions.

    Raises:
        InvalidRequestError: two functions share a name, or a ``parameters`` schema is
            malformed (``param`` points at it).
    """
    seen: set[str] = set()
    out: list[Tool] = []
    for i, tool in enumerate(tools or ()):
        fn = tool.function
        if fn.name in seen:
            raise InvalidRequestError(
                f"Function names in 'tools' must be unique; '{fn.name}' appears twice.",
                param=f"tools[{i}].function.name",
            )
        seen.add(fn.name)
        if fn.parameters is not None:
            check_schema(fn.parameters, f"tools[{i}].function.parameters")
        out.append(Tool(fn.name, fn.description, fn.parameters))
    return tuple(out)


def tool_choice_in(
    choice: str | dict[str, Any] | None, tools: tuple[Tool, ...]
) -> ToolChoice | None:
    """``tool_choice`` as a core ``ToolChoice`` (``None``: the default, ``auto`` with tools).

    Raises:
        InvalidRequestError: an unknown value, a function that is not in ``tools``, or a
            choice other than ``none`` without ``tools``.
    """
    if choice is None:
        return None
    if not tools:
        if choice == "none":
            return None
        raise InvalidRequestError(
            "'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice"
        )
    if isinstance(choice, str):
        if choice in ("none", "auto", "required"):
            return ToolChoice(ToolChoiceMode(choice))
        raise InvalidRequestError(
            f"Invalid value for 'tool_choice': '{choice}'. Supported values are 'none', "
            "'auto', 'required' or {'type': 'function', 'function': {'name': ...}}.",
            param="tool_choice",
        )
    fn = choice.get("function")
    name = fn.get("name") if isinstance(fn, dict) else None
    if choice.get("type") != "function" or not isinstance(name, str):
        raise InvalidRequestError(
            "Invalid value for 'tool_choice': an object must be "
            "{'type': 'function', 'function': {'name': ...}}.",
            param="tool_choice",
        )
    if name not in {t.name for t in tools}:
        raise InvalidRequestError(
            f"'tool_choice' names the function '{name}', which is not in 'tools'.",
            param="tool_choice",
        )
    return ToolChoice(ToolChoiceMode.FUNCTION, name)


def tool_calls_in(calls: list[ToolCallIn] | None) -> tuple[ToolCall, ...]:
    """An assistant message's ``tool_calls`` (arguments kept as the JSON text they are)."""
    return tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in calls or ())


def tool_call_dict(call: ToolCall) -> dict[str, Any]:
    """One entry of a response message's ``tool_calls``."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def argument_fragments(arguments: str) -> list[str]:
    """The arguments' JSON text in a few pieces, cut after each ``,`` or ``:`` (and the
    spaces after it); they concatenate to ``arguments`` exactly."""
    cuts = [m.end() for m in _SEPARATOR.finditer(arguments)]
    bounds = [0, *cuts, len(arguments)]
    return [arguments[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def tool_call_delta_dicts(part: ToolCallDelta) -> list[dict[str, Any]]:
    """The stream entries (each one chunk's ``delta.tool_calls[0]``) for a part of a call."""
    out: list[dict[str, Any]] = []
    if part.id is not None:
        out.append(
            {
                "index": part.index,
                "id": part.id,
                "type": "function",
                "function": {"name": part.name or "", "arguments": ""},
            }
        )
    out.extend(
        {"index": part.index, "function": {"arguments": piece}}
        for piece in argument_fragments(part.arguments)
    )
    return out


__all__ = [
    "argument_fragments",
    "tool_call_delta_dicts",
    "tool_call_dict",
    "tool_calls_in",
    "tool_choice_in",
    "tools_in",
]
