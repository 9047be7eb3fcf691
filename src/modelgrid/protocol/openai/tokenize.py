"""vLLM's tokenizer API: ``POST /tokenize`` and ``POST /detokenize``.

Reference: vLLM's ``entrypoints/openai`` protocol (``TokenizeCompletionRequest``,
``TokenizeChatRequest``, ``TokenizeResponse``, ``DetokenizeRequest``,
``DetokenizeResponse``). A tokenize request has ``model`` and either ``prompt`` (with
``add_special_tokens``, default true) or chat ``messages`` (OpenAI's shape, with
``add_generation_prompt``, default true, and optional ``tools``); the answer is ``{"count",
"max_model_len", "tokens"}``. A detokenize request has ``model`` and ``tokens``; the answer is
``{"prompt"}``. Unknown fields are ignored; ``continue_final_message`` and
``return_token_strs`` are refused when true (not implemented); ``add_special_tokens`` is
ignored for messages (the chat template places the special tokens).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from modelgrid.core.errors import InvalidRequestError, UnsupportedParameterError
from modelgrid.core.types import InferenceRequest, TokenizeOptions
from modelgrid.protocol.openai.convert import to_inference_request
from modelgrid.protocol.openai.models import ChatCompletionRequest, ChatMessageIn, ToolIn


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    prompt: str | None = None
    messages: list[ChatMessageIn] | None = None
    add_special_tokens: StrictBool | None = None
    add_generation_prompt: StrictBool = True
    continue_final_message: StrictBool = False
    return_token_strs: StrictBool | None = None
    tools: list[ToolIn] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either 'prompt' or 'messages'")
        return self


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    tokens: list[StrictInt]


def to_tokenize_input(
    req: TokenizeRequest, request_id: str
) -> tuple[InferenceRequest, TokenizeOptions]:
    """The core request whose prompt is tokenized, and how.

    Messages convert exactly as a chat completion's do (``convert.to_inference_request``),
    so their count is the prompt usage a chat call of them records.

    Raises:
        UnsupportedParameterError: ``return_token_strs``.
        InvalidRequestError: as chat completions, for messages and tools.
    """
    if (
        req.continue_final_message
        and req.add_generation_prompt
        and "add_generation_prompt" in (req.model_fields_set)
    ):  # vLLM's rule: the final message goes on, or a new turn opens, not both
        raise InvalidRequestError(
            "'continue_final_message' and 'add_generation_prompt' cannot both be true.",
            param="continue_final_message",
        )
    if req.return_token_strs:
        raise UnsupportedParameterError(
            "'return_token_strs' is not supported.", param="return_token_strs"
        )
    if req.messages is None:
        assert req.prompt is not None
        request = InferenceRequest(request_id=request_id, model=req.model, prompt=req.prompt)
        special = True if req.add_special_tokens is None else req.add_special_tokens
        return request, TokenizeOptions(add_special_tokens=special)
    chat = ChatCompletionRequest.model_construct(
        model=req.model,
        messages=req.messages,
        tools=req.tools,
        continue_final_message=req.continue_final_message,
    )
    request = to_inference_request(chat, request_id)
    return request, TokenizeOptions(add_generation_prompt=req.add_generation_prompt)


def tokenize_response(tokens: list[int], max_model_len: int) -> dict[str, Any]:
    return {"count": len(tokens), "max_model_len": max_model_len, "tokens": tokens}


__all__ = ["DetokenizeRequest", "TokenizeRequest", "to_tokenize_input", "tokenize_response"]
