"""Anthropic Messages request models, with the API reference's field names.

Reference: https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/api/messages-count-tokens. Liberal in what they accept, since
agents (Claude Code) send new fields each release: unknown fields are ignored everywhere,
content blocks are read by ``type`` in ``convert`` (which refuses the kinds this model cannot
read, naming the block), ``cache_control`` is accepted on anything, ``thinking`` is accepted
and ignored, and a ``system`` turn inside ``messages`` is allowed (``convert`` folds it into
the system prompt).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from modelgrid.protocol import MAX_MESSAGES


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentBlock(_Open):
    """Any content block; the fields of the kinds modelgrid reads (``text``, ``tool_use``,
    ``tool_result``), the others kept as extra fields for ``convert`` to name."""

    type: str
    text: str | None = None
    id: str | None = None  # tool_use
    name: str | None = None  # tool_use
    input: Any = None  # tool_use: the arguments object
    tool_use_id: str | None = None  # tool_result
    content: str | list[ContentBlock] | None = None  # tool_result
    is_error: bool | None = None  # tool_result


class MessageParam(_Open):
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class ToolParam(_Open):
    """A client tool; ``type`` is absent or ``custom`` (server tools have other types)."""

    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoiceParam(_Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: StrictBool | None = None


class CountTokensRequest(_Open):
    """``POST /v1/messages/count_tokens``: what shapes the prompt, no sampling."""

    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: str | list[ContentBlock] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: Any = None  # accepted and ignored: the model has no thinking mode


class MessagesRequest(CountTokensRequest):
    """``POST /v1/messages``."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: list[str] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None
    metadata: dict[str, Any] | None = None  # ``user_id``: accepted, not used
    stream: StrictBool | None = False
    # Structured outputs: ``{"type": "json_schema", "schema": {...}}``, enforced by grammar
    # (the beta's ``output_format``, or ``output_config.format``).
    output_format: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None


__all__ = [
    "ContentBlock",
    "CountTokensRequest",
    "MessageParam",
    "MessagesRequest",
    "ToolChoiceParam",
    "ToolParam",
]
