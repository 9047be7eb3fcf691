"""OpenAI chat-completions request models, with the API reference's field names.

Reference: https://platform.openai.com/docs/api-reference/chat/create (ranges as its OpenAPI
spec gives them: ``temperature`` 0..2, ``top_p`` 0..1, penalties -2..2, ``n`` 1..128,
``top_logprobs`` 0..20, ``seed`` an int64; ``top_p`` 0 keeps only the most likely token, as
llama.cpp's nucleus sampler does, and upstreams get ``temperature`` 0 instead,
``engines.openai_wire``). Unknown fields are accepted and ignored (as vLLM does), so SDK
``extra_body`` additions never fail; fields whose behaviour modelgrid does not implement yet
are rejected by ``convert`` with a clear 400.
Fields whose valid shape depends on other fields (``tool_choice``, ``response_format``) are
checked by ``convert``, which names the parameter at fault.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from modelgrid.protocol import MAX_MESSAGES

MAX_N = 128  # the reference's most choices for one request


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


FunctionName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class FunctionCallIn(BaseModel):
    """``tool_calls[].function`` of an assistant message: ``arguments`` is JSON text."""

    model_config = ConfigDict(extra="allow")
    name: str
    arguments: str


class ToolCallIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(BaseModel):
    """``tools[].function``: ``parameters`` is the JSON Schema of the arguments object."""

    model_config = ConfigDict(extra="allow")
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class ToolIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDefinition


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: StrictBool | None = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: str = Field(min_length=1)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None  # 0: the most likely token
    stop: str | list[str] | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    user: str | None = None
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    tools: list[ToolIn] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    # vLLM's extra sampling parameters (DashScope's too): not in OpenAI's reference.
    top_k: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0)] | None = None
    # vLLM's: go on with the final (assistant) message instead of starting a new turn.
    continue_final_message: StrictBool = False
    # Accepted for validation; convert.py rejects it (not implemented yet).
    logit_bias: dict[str, float] | None = None


__all__ = [
    "MAX_N",
    "ChatCompletionRequest",
    "ChatMessageIn",
    "FunctionCallIn",
    "FunctionDefinition",
    "StreamOptions",
    "TextPart",
    "ToolCallIn",
    "ToolIn",
]
