"""DashScope text-generation request models, with the API reference's field names.

Reference: https://help.aliyun.com/zh/model-studio/qwen-api-reference ("DashScope" tab).
The body is ``{"model", "input": {"messages" | "prompt"}, "parameters": {...}}``. Unknown
fields at every level are accepted and ignored (DashScope's vendor switches such as
``enable_search``, ``enable_thinking``, ``search_options`` and the SDK's ``user_agent``), so
existing SDK code never fails on them; combinations the reference rules out are rejected by
``convert`` with ``InvalidParameter``. Function-calling fields reuse the OpenAI side's models
(``tools`` and ``tool_calls`` have the same shape).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from modelgrid.protocol import MAX_MESSAGES
from modelgrid.protocol.openai.models import ToolCallIn, ToolIn

ResultFormat = Literal["text", "message"]


class TextPart(BaseModel):
    """One element of a list ``content`` (DashScope's multimodal shape: ``{"text": ...}``)."""

    model_config = ConfigDict(extra="allow")
    text: str | None = None


class ToolCallMessage(ToolCallIn):
    """An entry of an assistant message's ``tool_calls``: OpenAI's shape, plus the ``index``
    DashScope adds (accepted, not needed); the ``id`` may be missing."""

    id: str = ""
    index: int | None = None


class Message(BaseModel):
    """A conversation turn; a ``tool`` turn's ``name`` is the function that produced it."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallMessage] | None = None
    tool_call_id: str | None = None


class GenerationInput(BaseModel):
    """``input``: a conversation (``messages``) or a single user turn (``prompt``)."""

    model_config = ConfigDict(extra="allow")
    messages: list[Message] | None = Field(default=None, max_length=MAX_MESSAGES)
    prompt: str | None = None

    @model_validator(mode="after")
    def _needs_one(self) -> GenerationInput:
        if self.messages == [] and not self.prompt:
            raise ValueError("input.messages must not be empty")
        if not self.messages and not self.prompt:
            raise ValueError("input.messages or input.prompt is required")
        return self


class GenerationParameters(BaseModel):
    """``parameters``; ranges as documented in the API reference.

    ``top_k`` (0 = off) and ``repetition_penalty`` (1.0 = off) reach llama.cpp's sampler
    (``top_k``, ``repeat_penalty``); ``n`` > 1 and ``tools`` need ``result_format="message"``.
    ``tools`` has OpenAI's function-tool shape; ``tool_choice`` is ``auto``, ``none`` or
    ``{"type": "function", "function": {"name": ...}}`` (checked against ``tools`` in
    ``convert``); ``parallel_tool_calls`` defaults to false, as on DashScope.
    ``response_format`` is OpenAI's (``text``, ``json_object``, ``json_schema``), enforced by
    grammar like it (``protocol.openai.formats``). ``top_p`` is in (0, 1] and ``temperature``
    in [0, 2), as the reference gives them.
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    result_format: ResultFormat = "text"
    incremental_output: StrictBool = False
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, lt=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    stop: str | list[str] | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    n: Annotated[int, Field(ge=1, le=4)] | None = None
    tools: list[ToolIn] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: dict[str, Any] | None = None


class GenerationRequest(BaseModel):
    """The whole request body."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: GenerationInput
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)


__all__ = [
    "GenerationInput",
    "GenerationParameters",
    "GenerationRequest",
    "Message",
    "ResultFormat",
    "TextPart",
    "ToolCallMessage",
]
