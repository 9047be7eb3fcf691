"""Wire <-> core conversion for OpenAI chat completions.

Request: ``ChatCompletionRequest`` -> ``InferenceRequest`` (function calling in ``tools``,
``response_format`` in ``formats``). Response: what serving collected from the core ``Delta``s
and ``TokenUsage`` -> the JSON objects of the reference (``chat.completion`` and
``chat.completion.chunk``), as plain dicts ready for ``json.dumps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelgrid.core.errors import InvalidRequestError, UnsupportedParameterError
from modelgrid.core.types import (
    ChatMessage,
    InferenceRequest,
    SamplingParams,
    TokenLogprob,
    TokenUsage,
    ToolCall,
)
from modelgrid.protocol.json_schema import check_forced_tools
from modelgrid.protocol.openai.errors import STREAM_OPTIONS_ALONE
from modelgrid.protocol.openai.formats import response_format_in
from modelgrid.protocol.openai.models import ChatCompletionRequest, ChatMessageIn
from modelgrid.protocol.openai.params import stop_sequences
from modelgrid.protocol.openai.tools import tool_call_dict, tool_calls_in, tool_choice_in, tools_in


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


def _check_combinations(req: ChatCompletionRequest) -> None:
    if req.logit_bias:
        raise UnsupportedParameterError("'logit_bias' is not supported yet.", param="logit_bias")
    if req.top_logprobs is not None and not req.logprobs:
        raise InvalidRequestError(
            "'logprobs' must be true when 'top_logprobs' is given.", param="top_logprobs"
        )
    if req.continue_final_message:
        last = req.messages[-1]
        if last.role != "assistant" or not last.content or last.tool_calls:
            raise InvalidRequestError(
                "'continue_final_message' needs a final assistant message with text content"
                " (and no tool calls) to go on with.",
                param="continue_final_message",
            )
    if req.stream_options is not None and not req.stream:
        raise InvalidRequestError(STREAM_OPTIONS_ALONE, param="stream_options")
    both = req.max_tokens is not None and req.max_completion_tokens is not None
    if both and req.max_tokens != req.max_completion_tokens:
        raise InvalidRequestError(
            "Give either 'max_tokens' or 'max_completion_tokens', not both.",
            param="max_completion_tokens",
        )


def _message(m: ChatMessageIn, index: int) -> ChatMessage:
    # The reference: ``content`` is required, except on an assistant message with tool_calls.
    if m.content is None and (m.role != "assistant" or not m.tool_calls):
        raise InvalidRequestError(
            f"A message with role '{m.role}' needs its 'content' (got null or nothing)"
            + (" unless it has 'tool_calls'." if m.role == "assistant" else "."),
            param=f"messages[{index}].content",
        )
    if m.role == "tool" and not m.tool_call_id:
        raise InvalidRequestError(
            "A message with role 'tool' needs the 'tool_call_id' it answers.",
            param=f"messages[{index}].tool_call_id",
        )
    return ChatMessage(
        role="system" if m.role == "developer" else m.role,
        content=_content_text(m, index),
        name=m.name,
        tool_calls=tool_calls_in(m.tool_calls),
        tool_call_id=m.tool_call_id,
    )


def _check_tool_replies(messages: list[ChatMessageIn]) -> None:
    """A ``tool`` message answers a call of the assistant message it follows (tool messages
    in between): OpenAI answers 400 "messages with role 'tool' must be a response to a
    preceding message with 'tool_calls'" otherwise."""
    offered: set[str] = set()
    for i, m in enumerate(messages):
        if m.role == "assistant":
            offered = {c.id for c in m.tool_calls or ()}
        elif m.role != "tool":
            offered = set()
        elif m.tool_call_id and m.tool_call_id not in offered:
            raise InvalidRequestError(
                f"A message with role 'tool' must answer a call of the assistant message"
                f" before it; no tool call '{m.tool_call_id}' there.",
                param=f"messages[{i}].tool_call_id",
            )


def to_inference_request(req: ChatCompletionRequest, request_id: str) -> InferenceRequest:
    """Convert a validated wire request to the core request.

    Raises:
        InvalidRequestError: a parameter is out of its documented range or combination.
        UnsupportedParameterError: a known parameter modelgrid does not implement yet; a JSON
            Schema keyword the grammar cannot enforce, in ``response_format`` or in the
            ``parameters`` of a function ``tool_choice`` forces (``protocol.json_schema``).
    """
    _check_combinations(req)
    messages = [_message(m, i) for i, m in enumerate(req.messages)]
    _check_tool_replies(req.messages)
    tools = tools_in(req.tools)
    tool_choice = tool_choice_in(req.tool_choice, tools)
    check_forced_tools(tools, tool_choice, lambda i: f"tools[{i}].function.parameters")
    sampling = SamplingParams(
        max_tokens=req.max_completion_tokens or req.max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        stop=stop_sequences(req.stop),
        seed=req.seed,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        response_format=response_format_in(req.response_format),
        logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs or 0,
        top_k=req.top_k or 0,
        repetition_penalty=req.repetition_penalty or 1.0,
    )
    return InferenceRequest(
        request_id=request_id,
        model=req.model,
        messages=messages,
        sampling=sampling,
        n=req.n or 1,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        continue_final_message=req.continue_final_message,
    )


def usage_dict(usage: TokenUsage) -> dict[str, Any]:
    """The reference's ``usage`` object; ``prompt_tokens_details.cached_tokens`` when the
    replica served part of the prompt from its prefix cache (how a gateway in front learns
    it, ``engines.upstream``)."""
    body: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens:
        body["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return body


def _logprob_dict(lp: TokenLogprob) -> dict[str, Any]:
    return {"token": lp.token, "logprob": lp.logprob, "bytes": list(lp.token_bytes)}


def logprobs_dict(logprobs: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> dict[str, Any]:
    """A choice's ``logprobs`` object: ``content`` has one entry per token."""
    return {
        "content": [
            {**_logprob_dict(lp), "top_logprobs": [_logprob_dict(t) for t in lp.top]}
            for lp in logprobs
        ],
        "refusal": None,
    }


@dataclass(slots=True)
class ChoiceResult:
    """One generated choice, collected from its deltas.

    Attributes:
        text: The content (empty when the model only called functions).
        finish_reason: The wire's finish reason.
        tool_calls: Complete calls, in order.
        logprobs: One entry per completion token; ``None`` when not asked for.
        stop_reason: The stop string that ended the choice, if one did (vLLM's
            ``stop_reason``: sent only then, so a gateway in front can tell which one).
    """

    text: str = ""
    finish_reason: str = "stop"
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    stop_reason: str | None = None


def _message_dict(choice: ChoiceResult) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.text if choice.text or not choice.tool_calls else None,
        "refusal": None,
    }
    if choice.tool_calls:
        message["tool_calls"] = [tool_call_dict(c) for c in choice.tool_calls]
    return message


def completion_dict(
    *,
    completion_id: str,
    created: int,
    model: str,
    choices: list[ChoiceResult],
    usage: TokenUsage,
) -> dict[str, Any]:
    """A ``chat.completion`` object with one entry per choice."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": i,
                "message": _message_dict(c),
                "logprobs": None if c.logprobs is None else logprobs_dict(c.logprobs),
                "finish_reason": c.finish_reason,
                **({"stop_reason": c.stop_reason} if c.stop_reason is not None else {}),
            }
            for i, c in enumerate(choices)
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
        self,
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: list[TokenLogprob] | tuple[TokenLogprob, ...] = (),
        stop_reason: str | None = None,
    ) -> dict[str, Any]:
        """One chunk; ``logprobs`` are those of the tokens this chunk's delta came from;
        ``stop_reason`` (vLLM's field, only when set): the stop string that ended the
        choice."""
        choice: dict[str, Any] = {
            "index": index,
            "delta": delta,
            "logprobs": logprobs_dict(logprobs) if logprobs else None,
            "finish_reason": finish_reason,
        }
        if stop_reason is not None:
            choice["stop_reason"] = stop_reason
        obj = {**self._head, "choices": [choice]}
        if self.include_usage:
            obj["usage"] = None
        return obj

    def role_chunk(self, index: int) -> dict[str, Any]:
        return self.chunk(index, {"role": "assistant", "content": ""})

    def usage_chunk(self, usage: TokenUsage) -> dict[str, Any]:
        return {**self._head, "choices": [], "usage": usage_dict(usage)}


__all__ = [
    "ChoiceResult",
    "ChunkWriter",
    "completion_dict",
    "logprobs_dict",
    "to_inference_request",
    "usage_dict",
]
