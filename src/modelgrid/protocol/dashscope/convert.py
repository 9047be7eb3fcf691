"""Wire <-> core conversion for DashScope text generation.

Request: ``GenerationRequest`` -> core ``InferenceRequest``. Response: generated texts, finish
reasons and ``TokenUsage`` -> the JSON objects of the API reference
(https://help.aliyun.com/zh/model-studio/qwen-api-reference), as plain dicts:

- ``result_format="text"``: ``output = {"text": str, "finish_reason": str}``
- ``result_format="message"``: ``output = {"choices": [{"finish_reason": str, "message":
  {"role": "assistant", "content": str}}]}`` (each choice also carries ``index`` when n > 1;
  a message with function calls also has ``tool_calls``, see ``tools``)
- ``usage = {"input_tokens", "output_tokens", "total_tokens"}``, plus
  ``"prompt_tokens_details": {"cached_tokens"}`` when part of the input came from the cache

While streaming, ``finish_reason`` is the *string* ``"null"`` until the last event of a choice,
as DashScope sends it; the last event says ``"stop"``, ``"length"`` or ``"tool_calls"``.
"""

from __future__ import annotations

from typing import Any

from modelgrid.core.errors import InvalidRequestError, UnsupportedParameterError
from modelgrid.core.types import ChatMessage, InferenceRequest, SamplingParams, TokenUsage
from modelgrid.protocol.dashscope.models import GenerationRequest, Message, ResultFormat
from modelgrid.protocol.dashscope.tools import assistant_calls, tie_tool_results, tools_and_choice
from modelgrid.protocol.openai.formats import response_format_in

STREAMING_FINISH_REASON = "null"  # DashScope's literal string for "not finished yet"


def _content_text(message: Message, index: int) -> str | None:
    content = message.content
    if content is None and (message.role != "assistant" or not message.tool_calls):
        # as on OpenAI's wire: only an assistant turn that calls tools may leave it out
        raise InvalidRequestError(
            f"A message with role '{message.role}' needs its 'content' (got null or nothing"
            f" at input.messages[{index}].content).",
            param=f"input.messages[{index}].content",
        )
    if content is None or isinstance(content, str):
        return content
    texts: list[str] = []
    for part in content:
        if part.text is None:
            raise UnsupportedParameterError(
                "Only text content parts ({'text': ...}) are supported by this model.",
                param=f"input.messages[{index}].content",
            )
        texts.append(part.text)
    return "".join(texts)


def _stop_tuple(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else list(stop)
    if any(s == "" for s in items):
        raise InvalidRequestError("'stop' strings must be non-empty.", param="parameters.stop")
    return tuple(items)


def _messages(req: GenerationRequest) -> list[ChatMessage]:
    """``input.messages``, then ``input.prompt`` as a final user turn (as the SDK merges them);
    ``tool`` turns without a ``tool_call_id`` are tied to the call they answer."""
    out = [
        ChatMessage(
            role=m.role,
            content=_content_text(m, i),
            name=m.name,
            tool_calls=assistant_calls(m.tool_calls, i),
            tool_call_id=m.tool_call_id,
        )
        for i, m in enumerate(req.input.messages or [])
    ]
    if req.input.prompt:
        out.append(ChatMessage(role="user", content=req.input.prompt))
    return tie_tool_results(out)


def to_inference_request(req: GenerationRequest, request_id: str) -> InferenceRequest:
    """Convert a validated wire request to the core request.

    Raises:
        InvalidRequestError: a parameter combination the reference does not allow (``n`` > 1
            or ``tools`` without ``result_format="message"``, a ``tool_choice`` that does not
            fit ``tools``, a malformed function schema).
        UnsupportedParameterError: non-text content (not implemented yet).
    """
    p = req.parameters
    n = p.n or 1
    if n > 1 and p.result_format != "message":
        raise InvalidRequestError(
            "'n' greater than 1 requires result_format 'message'.", param="parameters.n"
        )
    if p.tools and p.result_format != "message":
        raise InvalidRequestError(
            "'tools' requires result_format 'message'.", param="parameters.result_format"
        )
    tools, tool_choice = tools_and_choice(p.tools, p.tool_choice)
    sampling = SamplingParams(
        max_tokens=p.max_tokens,
        temperature=1.0 if p.temperature is None else p.temperature,
        top_p=1.0 if p.top_p is None else p.top_p,
        stop=_stop_tuple(p.stop),
        seed=p.seed,
        presence_penalty=p.presence_penalty or 0.0,
        top_k=p.top_k or 0,
        repetition_penalty=1.0 if p.repetition_penalty is None else p.repetition_penalty,
        response_format=response_format_in(p.response_format, "parameters.response_format"),
    )
    return InferenceRequest(
        request_id=request_id,
        model=req.model,
        messages=_messages(req),
        sampling=sampling,
        n=n,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=bool(p.parallel_tool_calls),
    )


def usage_dict(usage: TokenUsage) -> dict[str, Any]:
    """The reference's ``usage`` object; ``prompt_tokens_details.cached_tokens`` when the
    replica served part of the input from its prefix cache (DashScope's context cache: the
    field of the SDKs' ``GenerationUsage``, https://help.aliyun.com/zh/model-studio/user-guide/context-cache;
    those tokens are part of ``input_tokens`` and billed at the cached rate)."""
    body: dict[str, Any] = {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens:
        body["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return body


def output_dict(
    result_format: ResultFormat,
    texts: list[str],
    finish_reasons: list[str],
    tool_calls: list[list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """``output`` for one or more choices (``text`` format: exactly one).

    Args:
        tool_calls: Per choice, its message's ``tool_calls`` entries (``tools``); a choice
            without any has no ``tool_calls`` key. Only in the ``message`` format.
    """
    if result_format == "text":
        return {"text": texts[0], "finish_reason": finish_reasons[0]}
    calls = tool_calls or [[] for _ in texts]
    choices: list[dict[str, Any]] = []
    for i, (text, reason, entries) in enumerate(zip(texts, finish_reasons, calls, strict=True)):
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if entries:
            message["tool_calls"] = entries
        choice: dict[str, Any] = {"finish_reason": reason, "message": message}
        if len(texts) > 1:
            choice["index"] = i
        choices.append(choice)
    return {"choices": choices}


def response_dict(
    *,
    request_id: str,
    result_format: ResultFormat,
    texts: list[str],
    finish_reasons: list[str],
    usage: TokenUsage,
    tool_calls: list[list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The non-streamed response body (``tool_calls``: as in ``output_dict``)."""
    return {
        "status_code": 200,
        "request_id": request_id,
        "code": "",
        "message": "",
        "output": output_dict(result_format, texts, finish_reasons, tool_calls),
        "usage": usage_dict(usage),
    }


def stream_event_dict(
    *,
    request_id: str,
    result_format: ResultFormat,
    index: int,
    text: str,
    finish_reason: str | None,
    usage: TokenUsage,
    n: int = 1,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``data`` of one streamed ``result`` event, carrying one choice.

    Args:
        text: The delta (``incremental_output``) or the choice's text so far.
        finish_reason: ``None`` while generating (sent as ``"null"``), then the final reason.
        usage: The running usage (input tokens, output tokens so far).
        n: Choices in the request; n > 1 adds each choice's ``index``.
        tool_calls: The message's ``tool_calls`` entries in this event (``message`` format):
            a part of one call (``incremental_output``) or every call so far.
    """
    reason = finish_reason or STREAMING_FINISH_REASON
    output = output_dict(result_format, [text], [reason], [tool_calls or []])
    if n > 1:
        output["choices"][0]["index"] = index
    return {"output": output, "usage": usage_dict(usage), "request_id": request_id}


__all__ = [
    "STREAMING_FINISH_REASON",
    "output_dict",
    "response_dict",
    "stream_event_dict",
    "to_inference_request",
    "usage_dict",
]
