"""Function calling on DashScope's native wire <-> core.

Request side (https://help.aliyun.com/zh/model-studio/qwen-api-reference and
https://help.aliyun.com/zh/model-studio/qwen-function-calling): ``parameters.tools`` has
OpenAI's function-tool shape and ``parameters.tool_choice`` is ``auto`` | ``none`` |
``{"type": "function", "function": {"name": …}}``, so both go through the OpenAI side's
converters (``protocol.openai.tools``); only the error's ``param`` gains the ``parameters.``
prefix. Tools need ``result_format: "message"`` (the reference says so; a ``text`` request
with tools is rejected rather than silently losing its calls). ``parallel_tool_calls``
defaults to false on DashScope, unlike OpenAI.

Conversation side: an assistant message's ``tool_calls`` are OpenAI's entries plus an
``index``; a ``tool`` message carries the function's result in ``content``, the ``name`` of
the function and, in current clients, the ``tool_call_id`` it answers. DashScope's older
examples send only the ``name``, so a ``tool`` message without ``tool_call_id`` is tied to
the first unanswered call (of that name, when it has one) of the assistant turn before it.

Response side: a message's ``tool_calls`` entries are ``{"id", "type": "function",
"function": {"name", "arguments"}, "index"}``, ``content`` is ``""`` when the model only
called functions, and ``finish_reason`` is ``"tool_calls"``. Streamed with
``incremental_output``, a call's first event carries its ``index``, ``id``, ``type`` and
``function.name`` with ``arguments: ""``; each following one carries ``"id": ""``, the
``type`` and only a piece of ``function.arguments`` (no ``name``: clients such as the
``dashscope`` SDK concatenate every ``name`` they see). Without ``incremental_output`` each
event carries every call so far, whole (arguments up to that point), like the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import ChatMessage, Tool, ToolCall, ToolCallDelta, ToolChoice
from modelgrid.protocol.json_schema import check_forced_tools
from modelgrid.protocol.openai.models import ToolCallIn, ToolIn
from modelgrid.protocol.openai.tools import (
    argument_fragments,
    tool_call_dict,
    tool_calls_in,
    tool_choice_in,
    tools_in,
)


def _prefixed(exc: InvalidRequestError) -> InvalidRequestError:
    return exc.at(f"parameters.{exc.param}") if exc.param else exc


def tools_and_choice(
    tools: list[ToolIn] | None, choice: str | dict[str, Any] | None
) -> tuple[tuple[Tool, ...], ToolChoice | None]:
    """``parameters.tools`` and ``parameters.tool_choice`` as core types.

    Raises:
        InvalidRequestError: as ``protocol.openai.tools.tools_in`` / ``tool_choice_in``, with
            ``param`` under ``parameters.``; the ``parameters`` of a function that
            ``tool_choice`` forces hold a keyword the grammar cannot enforce
            (``protocol.json_schema.check_forced_tools``).
    """
    try:
        core_tools = tools_in(tools)
        core_choice = tool_choice_in(choice, core_tools)
    except InvalidRequestError as exc:
        raise _prefixed(exc) from None
    check_forced_tools(
        core_tools, core_choice, lambda i: f"parameters.tools[{i}].function.parameters"
    )
    return core_tools, core_choice


def tie_tool_results(messages: list[ChatMessage]) -> list[ChatMessage]:
    """``messages`` with each ``tool`` message that lacks a ``tool_call_id`` tied to the first
    unanswered call of the latest assistant turn: one with the message's ``name`` when it
    has one and such a call exists, else the first unanswered one. Left as is when every call
    is answered."""
    out: list[ChatMessage] = []
    pending: list[ToolCall] = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            pending = list(m.tool_calls)
        elif m.role == "tool":
            if not m.tool_call_id and pending:
                named = [c for c in pending if c.name == m.name]
                m = replace(m, tool_call_id=(named or pending)[0].id)
            pending = [c for c in pending if c.id != m.tool_call_id]
        out.append(m)
    return out


def assistant_calls(calls: Sequence[ToolCallIn] | None, turn: int) -> tuple[ToolCall, ...]:
    """An assistant message's ``tool_calls`` (``index`` and other extra fields ignored); a
    call the client sent without an ``id`` gets ``call_<turn>_<n>``, so that the ``tool``
    messages answering it can be tied to it."""
    return tuple(
        replace(c, id=c.id or f"call_{turn}_{n}")
        for n, c in enumerate(tool_calls_in(list(calls or ())))
    )


def tool_call_entry(call: ToolCall, index: int) -> dict[str, Any]:
    """One entry of a message's ``tool_calls``: OpenAI's shape plus the call's ``index``."""
    return {**tool_call_dict(call), "index": index}


def call_steps(part: ToolCallDelta) -> list[ToolCallDelta]:
    """``part`` cut into the steps a stream sends as one event each: the call's opening (its
    ``id`` and ``name``, no arguments) if ``part`` has one, then the arguments in a few pieces
    (``protocol.openai.tools.argument_fragments``)."""
    head = [ToolCallDelta(part.index, part.id, part.name)] if part.id is not None else []
    pieces = argument_fragments(part.arguments)
    return head + [ToolCallDelta(part.index, arguments=piece) for piece in pieces]


def tool_call_step_entry(step: ToolCallDelta) -> dict[str, Any]:
    """The ``tool_calls`` entry of an ``incremental_output`` event for one of ``call_steps``."""
    if step.id is not None:
        function = {"name": step.name or "", "arguments": step.arguments}
        return {"index": step.index, "id": step.id, "type": "function", "function": function}
    return {
        "index": step.index,
        "id": "",
        "type": "function",
        "function": {"arguments": step.arguments},
    }


__all__ = [
    "assistant_calls",
    "call_steps",
    "tie_tool_results",
    "tool_call_entry",
    "tool_call_step_entry",
    "tools_and_choice",
]
