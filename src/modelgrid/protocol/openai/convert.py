"""Wire <-> core conversion for OpenAI chat completions.

Request: ``ChatCompletionRequest`` -> ``InferenceRequest``. Response: core ``Delta``s and
``TokenUsage`` -> the JSON objects of the reference (``chat.completion`` and
``chat.completion.chunk``), as plain dicts ready for ``json.dumps``.
"""

from __future__ import annotations

from typing import Any

from modelgrid.core.errors import InvalidRequestError, UnsupportedParameterError
from modelgrid.core.types import ChatMessage, InferenceRequest, SamplingParams, TokenUsage
from modelgrid.protocol.openai.models import ChatCompletionRequest, ChatMessageIn

MAX_STOP_SEQUENCES = 4  # the reference allows "up to 4 sequences"


def _content_text(message: ChatMessageIn, index: int) -> str | None:
    content = message.content
    if content is None or isinstance(content, str):
        return content
    texts: list[str] = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise UnsupportedParameterError(
                f"Content part type '{part.type}' is not supported by this model; "
                "only 'text' parts are.",
                param=f"messages[{index}].content",
            )
        texts.append(part.text)
    return "".join(texts)


def _stop_tuple(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else list(stop)
    if len(items) > MAX_STOP_SEQUENCES:
        raise InvalidRequestError(
            f"'stop' accepts at most {MAX_STOP_SEQUENCES} sequences, got {len(items)}.",
            param="stop",
        )
    if any(s == "" for s in items):
        raise InvalidRequestError("'stop' sequences must be non-empty strings.", param="stop")
    return tuple(items)


def _reject_unimplemented(req: ChatCompletionRequest) -> None:
    if req.tools:
        raise UnsupportedParameterError("'tools' is not supported yet.", param="tools")
    if req.response_format and req.response_format.get("type", "text") != "text":
        raise UnsupportedParameterError(
            "'response_format' other than {'type': 'text'} is not supported yet.",
            param="response_format",
        )
    if req.logprobs:
        raise UnsupportedParameterError("'logprobs' is not supported yet.", param="logprobs")
    if req.logit_bias:
        raise UnsupportedParameterError("'logit_bias' is not supported yet.", param="logit_bias")


def to_inference_request(req: ChatCompletionRequest, request_id: str) -> InferenceRequest:
    """Convert a validated wire request to the core request.

    Raises:
        InvalidRequestError: a parameter is out of its documented range or combination.
        UnsupportedParameterError: a known parameter modelgrid does not implement yet.
    """
    _reject_unimplemented(req)
    both = req.max_tokens is not None and req.max_completion_tokens is not None
    if both and req.max_tokens != req.max_completion_tokens:
        raise InvalidRequestError(
            "Give either 'max_tokens' or 'max_completion_tokens', not both.",
            param="max_completion_tokens",
        )
    messages = [
        ChatMessage(
            role="system" if m.role == "developer" else m.role,
            content=_content_text(m, i),
            name=m.name,
            tool_calls=m.tool_calls,
            tool_call_id=m.tool_call_id,
        )
        for i, m in enumerate(req.messages)
    ]
    sampling = SamplingParams(
        max_tokens=req.max_completion_tokens or req.max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        stop=_stop_tuple(req.stop),
        seed=req.seed,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
    )
    return InferenceRequest(
        request_id=request_id,
        model=req.model,
        messages=messages,
        sampling=sampling,
        n=req.n or 1,
    )


def usage_dict(usage: TokenUsage) -> dict[str, int]:
    """The reference's ``usage`` object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion_dict(
    *,
    completion_id: str,
    created: int,
    model: str,
    texts: list[str],
    finish_reasons: list[str],
    usage: TokenUsage,
) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice per generated text."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reasons[i],
            }
            for i, text in enumerate(texts)
        ],
        "usage": usage_dict(usage),
        "system_fingerprint": None,
    }


class ChunkWriter:
    """Builds ``chat.completion.chunk`` objects for one streamed response.

    Args:
        completion_id: Shared by every chunk of the response.
        created: Unix seconds.
        model: Model id echoed in each chunk.
        include_usage: ``stream_options.include_usage``: every chunk carries ``"usage": null``
            and ``usage_chunk`` builds the extra final chunk with ``choices: []``.
    """

    __slots__ = ("_head", "include_usage")

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self._head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        self.include_usage = include_usage

    def chunk(
        self, index: int, delta: dict[str, Any], finish_reason: str | None = None
    ) -> dict[str, Any]:
        obj = {
            **self._head,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            obj["usage"] = None
        return obj

    def role_chunk(self, index: int) -> dict[str, Any]:
        return self.chunk(index, {"role": "assistant", "content": ""})

    def usage_chunk(self, usage: TokenUsage) -> dict[str, Any]:
        return {**self._head, "choices": [], "usage": usage_dict(usage)}


__all__ = ["ChunkWriter", "completion_dict", "to_inference_request", "usage_dict"]
