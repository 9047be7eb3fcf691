"""Anthropic Messages request -> core ``InferenceRequest``, and the ``message`` object out.

Request (https://docs.anthropic.com/en/api/messages):

- ``system`` (a string or text blocks) and the text of any ``system`` turn inside
  ``messages`` become one system message, blocks joined by a blank line. Claude Code's
  per-request attribution block (a system text block beginning
  ``x-anthropic-billing-header:``) is dropped: it changes on every request, and kept at the
  head of the prompt it would defeat prefix caching and the router's prefix affinity for the
  whole conversation behind it.
- A turn's content is a string or blocks: ``text`` blocks (joined by a blank line); an
  assistant's ``tool_use`` blocks become its tool calls (``input`` as JSON text); a user's
  ``tool_result`` blocks become ``tool`` messages tied to their ``tool_use_id`` (content a
  string or text blocks; ``is_error`` prefixes ``Error: ``), in block order with the text
  around them; a final assistant turn of text is continued, not closed (the reference's
  prefill: the answer is what follows it); ``thinking`` / ``redacted_thinking`` blocks are dropped (``thinking`` is
  ignored). ``image`` and ``document`` blocks, and any other kind, are refused with a 400
  naming the block. Consecutive turns of one role are kept as they are.
- ``tools`` (custom tools: ``name``, ``description``, ``input_schema``; server tools, with
  another ``type``, are refused) and ``tool_choice`` (``auto``, ``any`` → required, ``tool``
  → that function, ``none``; ``disable_parallel_tool_use`` → one call at most).
- ``max_tokens``, ``stop_sequences``, ``temperature`` (0..1), ``top_p``, ``top_k``.

Response: ``message_dict`` builds the ``message`` object; ``usage_dict`` its usage, where
``input_tokens`` excludes the prompt tokens read from the prefix cache
(``cache_read_input_tokens``), so that the three input counts add up to the prompt, as the
reference defines them (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching).
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from modelgrid.core.errors import InvalidRequestError, UnsupportedParameterError
from modelgrid.core.types import (
    ChatMessage,
    FinishReason,
    InferenceRequest,
    ResponseFormat,
    SamplingParams,
    TokenUsage,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
)
from modelgrid.protocol.anthropic.models import (
    ContentBlock,
    CountTokensRequest,
    MessageParam,
    MessagesRequest,
    ToolChoiceParam,
    ToolParam,
)
from modelgrid.protocol.json_schema import check_forced_tools, check_schema
from modelgrid.protocol.openai.formats import schema_format

BILLING_HEADER = "x-anthropic-billing-header:"
BLOCK_SEPARATOR = "\n\n"
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_DROPPED = frozenset({"thinking", "redacted_thinking"})


def new_id(prefix: str) -> str:
    """An object id in Anthropic's style: ``msg_…`` or ``toolu_…`` and 24 hex characters."""
    return f"{prefix}_{secrets.token_hex(12)}"


def _refused(block: ContentBlock, where: str) -> UnsupportedParameterError:
    if block.type in ("image", "document"):
        why = "this model reads text only"
    else:
        why = "modelgrid reads 'text', 'tool_use' and 'tool_result' blocks"
    return UnsupportedParameterError(
        f"Content block type '{block.type}' ({where}) is not supported: {why}.", param=where
    )


def _texts(blocks: str | list[ContentBlock] | None, where: str) -> str:
    """Text blocks (or a string) as one text; any other block is refused."""
    if blocks is None or isinstance(blocks, str):
        return blocks or ""
    out: list[str] = []
    for k, block in enumerate(blocks):
        if block.type == "text":
            out.append(block.text or "")
        elif block.type not in _DROPPED:
            raise _refused(block, f"{where}[{k}]")
    return BLOCK_SEPARATOR.join(out)


def _system(req: CountTokensRequest) -> str | None:
    """The system prompt: ``system``, then the ``system`` turns, without the attribution."""
    parts: list[str] = []
    if isinstance(req.system, str):
        parts.append(req.system)
    else:
        for k, block in enumerate(req.system or ()):
            where = f"system[{k}]"
            if block.type != "text":
                raise _refused(block, where)
            if not (block.text or "").startswith(BILLING_HEADER):
                parts.append(block.text or "")
    for i, m in enumerate(req.messages):
        if m.role == "system":
            parts.append(_texts(m.content, f"messages[{i}].content"))
    parts = [p for p in parts if p]
    return BLOCK_SEPARATOR.join(parts) if parts else None


def _tool_use(block: ContentBlock, where: str) -> ToolCall:
    if not block.id or not block.name:
        raise InvalidRequestError(
            f"A 'tool_use' block needs its 'id' and 'name' ({where}).", param=where
        )
    arguments = block.input if block.input is not None else {}
    return ToolCall(block.id, block.name, json.dumps(arguments, ensure_ascii=False))


def _tool_result(block: ContentBlock, where: str) -> ChatMessage:
    if not block.tool_use_id:
        raise InvalidRequestError(
            f"A 'tool_result' block needs the 'tool_use_id' it answers ({where}).",
            param=f"{where}.tool_use_id",
        )
    text = _texts(block.content, f"{where}.content")
    if block.is_error:
        text = f"Error: {text}"
    return ChatMessage(role="tool", content=text, tool_call_id=block.tool_use_id)


def _turn(m: MessageParam, i: int) -> list[ChatMessage]:
    """One ``messages`` entry as core messages (a user turn with tool results: several)."""
    if isinstance(m.content, str):
        return [ChatMessage(role=m.role, content=m.content)]
    out: list[ChatMessage] = []
    texts: list[str] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(m.content):
        where = f"messages[{i}].content[{j}]"
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "tool_use" and m.role == "assistant":
            calls.append(_tool_use(block, where))
        elif block.type == "tool_result" and m.role == "user":
            if texts:
                out.append(ChatMessage(role="user", content=BLOCK_SEPARATOR.join(texts)))
                texts = []
            out.append(_tool_result(block, where))
        elif block.type in ("tool_use", "tool_result"):
            raise InvalidRequestError(
                f"A '{block.type}' block belongs in an "
                f"{'assistant' if block.type == 'tool_use' else 'user'} turn ({where}).",
                param=where,
            )
        elif block.type not in _DROPPED:
            raise _refused(block, where)
    if texts or calls or not out:
        content = BLOCK_SEPARATOR.join(texts) if texts else None
        out.append(ChatMessage(role=m.role, content=content, tool_calls=tuple(calls)))
    return out


def _tools(tools: list[ToolParam] | None) -> tuple[Tool, ...]:
    seen: set[str] = set()
    out: list[Tool] = []
    for i, t in enumerate(tools or ()):
        if t.type not in (None, "custom"):
            raise UnsupportedParameterError(
                f"Tool type '{t.type}' (tools[{i}].type) is not supported: only client tools "
                "(name, description, input_schema) are.",
                param=f"tools[{i}].type",
            )
        if not _TOOL_NAME.match(t.name):
            raise InvalidRequestError(
                f"Tool names are 1-128 letters, digits, '_' or '-'; got '{t.name}'.",
                param=f"tools[{i}].name",
            )
        if t.name in seen:
            raise InvalidRequestError(
                f"Tool names must be unique; '{t.name}' appears twice.", param=f"tools[{i}].name"
            )
        seen.add(t.name)
        if t.input_schema is not None:
            check_schema(t.input_schema, f"tools[{i}].input_schema")
        out.append(Tool(t.name, t.description, t.input_schema))
    return tuple(out)


_MODES = {
    "auto": ToolChoiceMode.AUTO,
    "any": ToolChoiceMode.REQUIRED,
    "tool": ToolChoiceMode.FUNCTION,
    "none": ToolChoiceMode.NONE,
}


def _tool_choice(choice: ToolChoiceParam | None, tools: tuple[Tool, ...]) -> ToolChoice | None:
    if choice is None:
        return None
    mode = _MODES[choice.type]
    if not tools and mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.FUNCTION):
        raise InvalidRequestError(
            f"'tool_choice' of type '{choice.type}' needs 'tools'.", param="tool_choice"
        )
    if mode is not ToolChoiceMode.FUNCTION:
        return ToolChoice(mode)
    if choice.name not in {t.name for t in tools}:
        raise InvalidRequestError(
            f"'tool_choice.name' must name one of the 'tools'; got {choice.name!r}.",
            param="tool_choice.name",
        )
    return ToolChoice(mode, choice.name)


def _output_format(req: MessagesRequest) -> ResponseFormat | None:
    """Structured outputs: ``output_format`` (the beta's name) or ``output_config.format``,
    ``{"type": "json_schema", "schema": {...}}``; every keyword of the schema is enforced by
    grammar or refused (``protocol.json_schema``), never ignored.

    Raises:
        InvalidRequestError, UnsupportedParameterError: another type, a malformed schema, a
            keyword the grammar cannot enforce (``param`` names where).
    """
    fmt, param = req.output_format, "output_format"
    if fmt is None and isinstance(req.output_config, dict):
        fmt, param = req.output_config.get("format"), "output_config.format"
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise InvalidRequestError(
            f'\'{param}\' must be {{"type": "json_schema", "schema": {{...}}}}.', param=param
        )
    return schema_format(fmt.get("schema", {}), None, f"{param}.schema")


def _stops(stops: list[str] | None) -> tuple[str, ...]:
    if any(s == "" for s in stops or ()):
        raise InvalidRequestError(
            "'stop_sequences' must be non-empty strings.", param="stop_sequences"
        )
    return tuple(dict.fromkeys(stops or ()))


def _check_tool_pairs(req: CountTokensRequest) -> None:
    """Each ``tool_result`` answers a ``tool_use`` of the message right before it (the
    reference's rule; the API answers 400 "unexpected `tool_use_id` found in `tool_result`
    blocks" otherwise)."""
    offered: set[str] = set()
    for i, m in enumerate(req.messages):
        blocks = [] if isinstance(m.content, str) else m.content
        if m.role == "user":
            for j, block in enumerate(blocks):
                if (
                    block.type == "tool_result"
                    and block.tool_use_id
                    and block.tool_use_id not in offered
                ):
                    raise InvalidRequestError(
                        f"Unexpected 'tool_use_id' '{block.tool_use_id}' in a 'tool_result'"
                        f" block (messages[{i}].content[{j}]): each 'tool_result' must answer a"
                        " 'tool_use' block of the message right before it.",
                        param=f"messages[{i}].content[{j}].tool_use_id",
                    )
        offered = {b.id for b in blocks if b.type == "tool_use" and b.id}


def to_inference_request(req: CountTokensRequest, request_id: str) -> InferenceRequest:
    """The core request of a Messages (or count_tokens) request (see the module doc).

    Raises:
        InvalidRequestError: a block or parameter that contradicts the reference (its
            ``param`` names it: ``messages[2].content[0]``, ``tool_choice.name``…).
        UnsupportedParameterError: image or document blocks, server tools, other block kinds.
    """
    _check_tool_pairs(req)
    messages: list[ChatMessage] = []
    system = _system(req)
    if system is not None:
        messages.append(ChatMessage(role="system", content=system))
    for i, m in enumerate(req.messages):
        if m.role != "system":
            messages.extend(_turn(m, i))
    prefill = _prefill(req, messages)
    tools = _tools(req.tools)
    choice = req.tool_choice
    tool_choice = _tool_choice(choice, tools)
    check_forced_tools(tools, tool_choice, lambda i: f"tools[{i}].input_schema")
    sampling = SamplingParams()
    if isinstance(req, MessagesRequest):
        sampling = SamplingParams(
            max_tokens=req.max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=req.top_k or 0,
            stop=_stops(req.stop_sequences),
            response_format=_output_format(req),
        )
    return InferenceRequest(
        request_id=request_id,
        model=req.model,
        messages=messages,
        sampling=sampling,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=not (choice is not None and choice.disable_parallel_tool_use),
        continue_final_message=prefill,
    )


def _prefill(req: CountTokensRequest, messages: list[ChatMessage]) -> bool:
    """Whether the conversation ends in an assistant turn of text to go on with (the
    reference's "prefill"), whose text may not end in whitespace (the reference's 400)."""
    last = messages[-1] if messages else None
    if last is None or last.role != "assistant" or last.tool_calls or not last.content:
        return False
    if last.content != last.content.rstrip():
        raise InvalidRequestError(
            "messages: final assistant content cannot end with trailing whitespace",
            param=f"messages[{len(req.messages) - 1}].content",
        )
    return True


def stop_reason(finish: FinishReason | None, matched_stop: str | None) -> str:
    """Anthropic's ``stop_reason`` for a core finish reason."""
    if finish is FinishReason.TOOL_CALLS:
        return "tool_use"
    if finish is FinishReason.LENGTH:
        return "max_tokens"
    return "stop_sequence" if matched_stop is not None else "end_turn"


def usage_dict(usage: TokenUsage) -> dict[str, int]:
    """The reference's ``usage``: the prompt split into uncached and cache-read tokens."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return {
        "input_tokens": usage.prompt_tokens - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.completion_tokens,
    }


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's arguments JSON text as ``tool_use.input`` (an object; ``{}`` if it is not)."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def message_dict(
    *,
    message_id: str,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str | None,
    stop_sequence: str | None,
    usage: TokenUsage,
) -> dict[str, Any]:
    """A ``message`` object (``content`` as built, in order)."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_dict(usage),
    }


__all__ = [
    "BILLING_HEADER",
    "message_dict",
    "new_id",
    "stop_reason",
    "to_inference_request",
    "tool_input",
    "usage_dict",
]
