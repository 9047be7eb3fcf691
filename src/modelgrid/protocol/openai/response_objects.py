"""OpenAI's Responses API, response side: the ``response`` object, its output items, its
usage and the streaming events, as plain dicts ready for ``json.dumps``.

References: https://platform.openai.com/docs/api-reference/responses/object and
https://platform.openai.com/docs/api-reference/responses-streaming. Every event carries a
``sequence_number`` (0, 1, … within one stream, ``EventWriter``); a streamed response and a
non-streamed one have the same items, ids and usage.
"""

from __future__ import annotations

from typing import Any

from modelgrid.core.types import TokenLogprob, TokenUsage
from modelgrid.protocol.openai.file_search_tool import echoed_tool
from modelgrid.protocol.openai.responses import ResponseCreateRequest


def usage_dict(usage: TokenUsage) -> dict[str, Any]:
    """``usage``: ``input_tokens`` (cached ones included), ``input_tokens_details.
    cached_tokens`` (served from the replica's prefix cache, billed at the cached rate),
    ``output_tokens``, ``total_tokens``."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def _logprob(lp: TokenLogprob) -> dict[str, Any]:
    return {"token": lp.token, "logprob": lp.logprob, "bytes": list(lp.token_bytes)}


def logprobs_list(logprobs: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> list[dict[str, Any]]:
    """An ``output_text`` part's ``logprobs``: one entry per token, with its alternatives."""
    return [{**_logprob(lp), "top_logprobs": [_logprob(t) for t in lp.top]} for lp in logprobs]


def text_part(text: str, logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    part["logprobs"] = logprobs_list(logprobs) if logprobs else []
    return part


def message_item(
    item_id: str, parts: list[dict[str, Any]], status: str = "completed"
) -> dict[str, Any]:
    """An assistant ``message`` output item."""
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": parts,
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    """A ``function_call`` output item (``arguments``: JSON text)."""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def echoed_fields(req: ResponseCreateRequest) -> dict[str, Any]:
    """The request's settings as the response object repeats them."""
    tools = [
        echoed_tool(t)
        if t.get("type") == "file_search"
        else {
            "type": "function",
            "name": t.get("name"),
            "description": t.get("description"),
            "parameters": t.get("parameters"),
            "strict": t.get("strict", True),
        }
        for t in req.tools or ()
    ]
    fmt = (req.text.format if req.text is not None else None) or {"type": "text"}
    return {
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "metadata": dict(req.metadata or {}),
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "store": req.store is not False,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "text": {"format": fmt},
        "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
        "tools": tools,
        "top_logprobs": req.top_logprobs or 0,
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "truncation": req.truncation or "disabled",
        "user": req.user,
    }


def response_dict(
    *,
    response_id: str,
    created_at: int,
    model: str,
    echoed: dict[str, Any],
    status: str,
    output: list[dict[str, Any]],
    usage: TokenUsage | None,
    error: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """A ``response`` object (``status``: ``in_progress``, ``completed``, ``incomplete``,
    ``failed``)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": model,
        "output": output,
        "service_tier": "default",
        **echoed,
        "usage": usage_dict(usage) if usage is not None else None,
    }


class EventWriter:
    """Numbers the events of one stream (``sequence_number`` from 0)."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        out = {"type": kind, "sequence_number": self._next, **fields}
        self._next += 1
        return out


__all__ = [
    "EventWriter",
    "echoed_fields",
    "function_call_item",
    "logprobs_list",
    "message_item",
    "response_dict",
    "text_part",
    "usage_dict",
]
