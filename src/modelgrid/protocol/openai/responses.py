"""OpenAI's Responses API, request side: the wire model and its conversion to core types.

Reference: https://platform.openai.com/docs/api-reference/responses/create. ``input`` is a
string (one user message) or a list of items; the items this module understands are
messages (``role`` ``user``/``system``/``developer`` with ``input_text`` parts, ``assistant``
with ``output_text``/``refusal`` parts; ``type: "message"`` optional), ``function_call`` and
``function_call_output``. ``reasoning`` items (which agents send back) carry nothing this
model can use and are dropped. Any other item or content type (images, files, audio, item
references, built-in tools' calls) is refused with a 400 naming it (``param`` points at it).

``normalize_input`` turns the input into stored items (each with an ``id``, as
``GET /v1/responses/{id}/input_items`` lists them); ``conversation`` turns stored items, the
whole chain's in order, into the core ``ChatMessage`` list. Unknown top-level fields are
ignored, as everywhere in modelgrid; fields that would change the meaning of the request
and are not implemented (``background``, ``conversation``, ``prompt``) are refused.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from modelgrid.core.errors import InvalidRequestError, UnsupportedParameterError
from modelgrid.core.types import (
    ChatMessage,
    ResponseFormat,
    ResponseFormatKind,
    Tool,
    ToolCall,
    ToolChoice,
)
from modelgrid.protocol import MAX_MESSAGES
from modelgrid.protocol.json_schema import check_forced_tools, check_schema
from modelgrid.protocol.openai.errors import array_too_long
from modelgrid.protocol.openai.formats import schema_format
from modelgrid.protocol.openai.tools import tool_choice_in

_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
INCLUDABLE = frozenset(
    {
        "message.output_text.logprobs",
        "file_search_call.results",  # the file_search_call item's results
        "reasoning.encrypted_content",  # no reasoning items are produced: nothing to add
        "message.input_image.image_url",  # no image inputs are accepted: nothing to add
    }
)
METADATA_MAX_PAIRS = 16


def item_id(prefix: str) -> str:
    """A fresh item or response id: ``prefix_`` and 48 random hex characters."""
    return f"{prefix}_{secrets.token_hex(24)}"


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: dict[str, Any] | None = None


class ResponseCreateRequest(BaseModel):
    """``POST /v1/responses``; ranges as the reference documents them."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    text: TextConfig | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    store: StrictBool | None = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = "disabled"
    stream: StrictBool | None = False
    user: str | None = None
    reasoning: dict[str, Any] | None = None
    background: StrictBool | None = None
    conversation: Any = None
    prompt: Any = None


def check_request(req: ResponseCreateRequest) -> None:
    """Refuse what is well-formed but not served.

    Raises:
        UnsupportedParameterError: ``background``, ``conversation`` or ``prompt`` (400).
        InvalidRequestError: bad ``metadata``, ``include`` or an empty ``input``.
    """
    for name in ("background", "conversation", "prompt"):
        if getattr(req, name) not in (None, False):
            raise UnsupportedParameterError(
                f"'{name}' is not supported; chain turns with 'previous_response_id'.",
                param=name,
            )
    if req.metadata is not None:
        if len(req.metadata) > METADATA_MAX_PAIRS:
            raise InvalidRequestError(
                f"'metadata' has {len(req.metadata)} pairs; at most {METADATA_MAX_PAIRS}.",
                param="metadata",
            )
        for key, value in req.metadata.items():
            if len(key) > 64 or len(value) > 512:
                raise InvalidRequestError(
                    "'metadata' keys are at most 64 characters and values at most 512.",
                    param=f"metadata.{key[:64]}",
                )
    for i, name in enumerate(req.include or ()):
        if name not in INCLUDABLE:
            raise InvalidRequestError(
                f"Invalid value for 'include[{i}]': {name!r}. Supported values: "
                + ", ".join(sorted(INCLUDABLE))
                + ".",
                param=f"include[{i}]",
            )
    if isinstance(req.input, list) and not req.input:
        raise InvalidRequestError("'input' must not be an empty list.", param="input")
    if isinstance(req.input, list) and len(req.input) > MAX_MESSAGES:
        raise InvalidRequestError(
            array_too_long("input", MAX_MESSAGES, len(req.input)), param="input"
        )


def _text_of(content: Any, param: str, allowed: frozenset[str]) -> str:
    """The text of a message's ``content``: a string, or text parts joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(
            f"'{param}' must be a string or a list of content parts.", param=param
        )
    texts = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise UnsupportedParameterError(
                f"Content part type {kind!r} is not supported here; use "
                + " or ".join(f"'{a}'" for a in sorted(allowed))
                + ".",
                param=f"{where}.type",
            )
        value = part.get("refusal" if kind == "refusal" else "text")
        if not isinstance(value, str):
            raise InvalidRequestError(f"'{where}' needs a string 'text'.", param=where)
        texts.append(value)
    return "".join(texts)


_INPUT_PARTS = frozenset({"input_text"})
_OUTPUT_PARTS = frozenset({"output_text", "refusal"})


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(
            f"'{where}.{key}' is required and must be a non-empty string.", param=f"{where}.{key}"
        )
    return value


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "system", "developer", "assistant"):
        raise InvalidRequestError(
            f"Invalid value for '{where}.role': {role!r}. Supported values are 'user', "
            "'assistant', 'system' and 'developer'.",
            param=f"{where}.role",
        )
    if role == "assistant":
        text = _text_of(item.get("content"), f"{where}.content", _OUTPUT_PARTS)
        part = {"type": "output_text", "text": text, "annotations": []}
    else:
        text = _text_of(item.get("content"), f"{where}.content", _INPUT_PARTS)
        part = {"type": "input_text", "text": text}
    given = item.get("id")
    return {
        "id": given if isinstance(given, str) and given else item_id("msg"),
        "type": "message",
        "role": role,
        "status": "completed",
        "content": [part],
    }


def _item(item: Any, where: str) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        raise InvalidRequestError(f"'{where}' must be an object.", param=where)
    kind = item.get("type", "message")
    if kind == "message":
        return _message(item, where)
    if kind == "function_call":
        args = item.get("arguments", "")
        if not isinstance(args, str):
            raise InvalidRequestError(f"'{where}.arguments' must be a string.", param=where)
        given = item.get("id")
        return {
            "id": given if isinstance(given, str) and given else item_id("fc"),
            "type": "function_call",
            "call_id": _string(item, "call_id", where),
            "name": _string(item, "name", where),
            "arguments": args,
            "status": "completed",
        }
    if kind == "function_call_output":
        output = _text_of(item.get("output"), f"{where}.output", _INPUT_PARTS)
        given = item.get("id")
        return {
            "id": given if isinstance(given, str) and given else item_id("fco"),
            "type": "function_call_output",
            "call_id": _string(item, "call_id", where),
            "output": output,
            "status": "completed",
        }
    if kind in ("reasoning", "file_search_call"):
        # an agent echoing a reasoning model's item, or a server-side tool's call whose
        # results went into that turn's context: nothing to feed this model
        return None
    raise UnsupportedParameterError(
        f"Input item type {kind!r} is not supported; use messages, 'function_call' and "
        "'function_call_output' items.",
        param=f"{where}.type",
    )


def normalize_input(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request's ``input`` as stored items, each with an ``id``.

    Raises:
        InvalidRequestError / UnsupportedParameterError: an item or part is malformed or of
            a kind not served (``param`` is its path, e.g. ``input[2].content[0].type``).
    """
    if isinstance(value, str):
        return [_message({"role": "user", "content": value}, "input")]
    items = (_item(item, f"input[{i}]") for i, item in enumerate(value))
    return [item for item in items if item is not None]


def conversation(instructions: str | None, items: list[dict[str, Any]]) -> list[ChatMessage]:
    """The chat the model sees: ``instructions`` as the system message, then the items in
    order; consecutive ``function_call`` items join the assistant turn before them (one turn
    with several calls), each ``function_call_output`` is a ``tool`` turn."""
    out: list[ChatMessage] = []
    if instructions:
        out.append(ChatMessage(role="system", content=instructions))
    for item in items:
        kind = item["type"]
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            text = "".join(p.get("text") or p.get("refusal") or "" for p in item["content"])
            out.append(ChatMessage(role=role, content=text))
        elif kind == "function_call":
            call = ToolCall(item["call_id"], item["name"], item["arguments"])
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                out[-1] = ChatMessage(
                    role="assistant", content=last.content, tool_calls=(*last.tool_calls, call)
                )
            else:
                out.append(ChatMessage(role="assistant", content=None, tool_calls=(call,)))
        elif kind == "function_call_output":
            out.append(
                ChatMessage(role="tool", content=item["output"], tool_call_id=item["call_id"])
            )
    return out


def tools_in(tools: list[dict[str, Any]] | None) -> tuple[Tool, ...]:
    """Function tools in the Responses API's flat shape (``{"type": "function", "name",
    "description", "parameters", "strict"}``).

    Raises:
        UnsupportedParameterError: a built-in tool type (``web_search`` …) other than
            ``file_search`` (skipped here: ``file_search_tool.file_search_tool``).
        InvalidRequestError: a missing or repeated name, a malformed ``parameters`` schema.
    """
    out: list[Tool] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools or ()):
        where = f"tools[{i}]"
        kind = tool.get("type")
        if kind == "file_search":
            continue  # run by the gateway itself (``protocol.openai.file_search_tool``)
        if kind != "function":
            raise UnsupportedParameterError(
                f"Tool type {kind!r} is not supported; only 'function' and 'file_search' "
                "tools are.",
                param=f"{where}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidRequestError(
                f"'{where}.name' is required: 1 to 64 characters from a-z, A-Z, 0-9, '_', '-'.",
                param=f"{where}.name",
            )
        if name in seen:
            raise InvalidRequestError(
                f"Function names in 'tools' must be unique; '{name}' appears twice.",
                param=f"{where}.name",
            )
        seen.add(name)
        params = tool.get("parameters")
        if params is not None:
            check_schema(params, f"{where}.parameters")
        description = tool.get("description")
        out.append(Tool(name, description if isinstance(description, str) else None, params))
    return tuple(out)


def tool_choice(value: str | dict[str, Any] | None, tools: tuple[Tool, ...]) -> ToolChoice | None:
    """``tool_choice``: ``none`` | ``auto`` | ``required`` | ``{"type": "function", "name"}``;
    the functions it forces must have schemas the grammar can enforce.

    Raises:
        InvalidRequestError: another shape, or a function not in ``tools``.
        UnsupportedParameterError: a forced function's ``parameters`` use a keyword the
            grammar cannot enforce (``tools[i].parameters``).
    """
    if isinstance(value, dict):
        if value.get("type") != "function" or not isinstance(value.get("name"), str):
            raise InvalidRequestError(
                "'tool_choice' must be 'none', 'auto', 'required' or "
                '{"type": "function", "name": "<function name>"}.',
                param="tool_choice",
            )
        value = {"type": "function", "function": {"name": value["name"]}}
    choice = tool_choice_in(value, tools)
    check_forced_tools(tools, choice, lambda i: f"tools[{i}].parameters")
    return choice


def text_format(text: TextConfig | None) -> ResponseFormat | None:
    """``text.format``: ``text`` | ``json_object`` | ``{"type": "json_schema", "name",
    "schema", "strict"}`` (every keyword enforced by grammar or refused, as chat's
    ``response_format``: ``protocol.json_schema``).

    Raises:
        InvalidRequestError, UnsupportedParameterError: an unknown type, a missing name, a
            malformed schema or a keyword the grammar cannot enforce (``param="text.format"``).
    """
    fmt = text.format if text is not None else None
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return ResponseFormat(ResponseFormatKind.JSON_OBJECT)
    if fmt.get("type") != "json_schema":
        raise InvalidRequestError(
            f"Invalid value for 'text.format.type': {fmt.get('type')!r}. Supported values "
            "are 'text', 'json_object' and 'json_schema'.",
            param="text.format",
        )
    name = fmt.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequestError(
            "'text.format.name' is required: 1 to 64 characters from a-z, A-Z, 0-9, '_', '-'.",
            param="text.format",
        )
    if "schema" not in fmt:
        raise InvalidRequestError(
            "'text.format.schema' is required for the 'json_schema' format.",
            param="text.format.schema",
        )
    return schema_format(fmt["schema"], name, "text.format.schema")


__all__ = [
    "INCLUDABLE",
    "ResponseCreateRequest",
    "TextConfig",
    "check_request",
    "conversation",
    "item_id",
    "normalize_input",
    "text_format",
    "tool_choice",
    "tools_in",
]
