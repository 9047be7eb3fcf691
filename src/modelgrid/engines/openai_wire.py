"""The OpenAI wire as a *client* sees it: request bodies for an upstream and its stream events.

``UpstreamEngine`` (``engines.upstream``) uses these to talk to any OpenAI-compatible server.
Bodies carry only the parameters that differ from the reference's defaults (so picky servers,
e.g. llama.cpp's or DashScope's compatible mode, are not handed fields they reject), with
``stream: true`` and ``stream_options.include_usage`` when the caller streams
(``InferenceRequest.stream``), else as a plain request answered by one JSON body. Stream
events are read with the least work correctness needs: ``SSEDecoder`` splits the byte stream
into ``data:`` payloads, and ``StreamParser`` turns each event's choices into core ``Delta``s
(text, function-call parts, log probabilities), noting finish reasons and the usage object;
``StreamParser.whole`` does the same for a non-streamed body (its ``message`` read as one
delta).

References: https://platform.openai.com/docs/api-reference/chat/create,
https://platform.openai.com/docs/api-reference/chat-streaming,
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from modelgrid.core.types import (
    ChatMessage,
    Delta,
    FinishReason,
    InferenceRequest,
    ResponseFormatKind,
    TokenLogprob,
    ToolCallDelta,
    ToolChoiceMode,
)
from modelgrid.engines.base import TokenizeOptions

DONE = b"[DONE]"

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": FinishReason.STOP,
    "eos": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
}


def _message(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.content is None and not m.tool_calls:
        out["content"] = ""
    if m.name:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    return out


def _tool_choice(request: InferenceRequest) -> Any:
    choice = request.tool_choice
    if choice is None:
        return None
    if choice.mode is ToolChoiceMode.FUNCTION:
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode.value


def request_body(request: InferenceRequest, model: str) -> dict[str, Any]:
    """The request body for ``request``, naming the upstream's ``model`` (streamed with usage
    when ``request.stream``).

    Chat requests (``messages``) go to ``/chat/completions``, raw prompts to ``/completions``
    (``request_path``). Sampling parameters at their reference default are left out, so the
    upstream applies its own defaults for them.
    """
    body: dict[str, Any] = {"model": model}
    if request.prompt is not None:
        body["prompt"] = request.prompt
    else:
        body["messages"] = [_message(m) for m in request.messages or ()]
        if request.continue_final_message:  # vLLM's pair: no new turn opened, the last goes on
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
    sp = request.sampling
    if sp.max_tokens is not None:
        body["max_tokens"] = sp.max_tokens
    if sp.top_p == 0.0:  # the most likely token only: greedy (vLLM refuses a top_p of 0)
        body["temperature"] = 0.0
    elif sp.temperature != 1.0:
        body["temperature"] = sp.temperature
    if 0.0 < sp.top_p < 1.0:
        body["top_p"] = sp.top_p
    if sp.stop:
        body["stop"] = list(sp.stop)
    if sp.seed is not None:
        body["seed"] = sp.seed
    if sp.presence_penalty:
        body["presence_penalty"] = sp.presence_penalty
    if sp.frequency_penalty:
        body["frequency_penalty"] = sp.frequency_penalty
    if sp.top_k:  # vLLM's (and DashScope's) extensions, sent only when set
        body["top_k"] = sp.top_k
    if sp.repetition_penalty != 1.0:
        body["repetition_penalty"] = sp.repetition_penalty
    if request.n != 1:
        body["n"] = request.n
    if sp.logprobs:
        if request.prompt is not None:  # the legacy API counts alternatives in ``logprobs``
            body["logprobs"] = sp.top_logprobs
        else:
            body["logprobs"] = True
            if sp.top_logprobs:
                body["top_logprobs"] = sp.top_logprobs
    fmt = sp.response_format
    if fmt is not None and fmt.kind is ResponseFormatKind.JSON_OBJECT:
        body["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.kind is ResponseFormatKind.JSON_SCHEMA:
        spec = {"name": fmt.name or "response", "schema": fmt.schema or {}}
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    if request.tools:
        body["tools"] = _tools(request)
        if (choice := _tool_choice(request)) is not None:
            body["tool_choice"] = choice
        if not request.parallel_tool_calls:
            body["parallel_tool_calls"] = False
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _tools(request: InferenceRequest) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                **({"description": t.description} if t.description else {}),
                **({"parameters": t.parameters} if t.parameters is not None else {}),
            },
        }
        for t in request.tools
    ]


def tokenize_body(
    request: InferenceRequest, model: str, options: TokenizeOptions
) -> dict[str, Any]:
    """The body of vLLM's ``POST /tokenize`` for ``request``'s prompt, naming the upstream's
    ``model``: ``prompt`` and ``add_special_tokens``, or ``messages``, ``add_generation_prompt``
    and the ``tools`` the model is shown (none when ``tool_choice`` is ``none``)."""
    body: dict[str, Any] = {"model": model}
    if request.prompt is not None:
        body["prompt"] = request.prompt
        body["add_special_tokens"] = options.add_special_tokens
        return body
    body["messages"] = [_message(m) for m in request.messages or ()]
    body["add_generation_prompt"] = options.add_generation_prompt
    if request.continue_final_message:
        body["continue_final_message"] = True
        body["add_generation_prompt"] = False
    if request.tool_mode is not ToolChoiceMode.NONE:
        body["tools"] = _tools(request)
    return body


def request_path(request: InferenceRequest) -> str:
    """``chat/completions`` or ``completions``, relative to the upstream's base URL."""
    return "completions" if request.prompt is not None else "chat/completions"


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class SSEDecoder:
    """Splits an SSE byte stream into the payloads of its ``data:`` fields.

    Feed it the bytes as they arrive; ``feed`` returns the payloads of the events completed
    by them (one event's several ``data:`` lines joined with ``\\n``, as the spec says).
    Comments, ``event:``/``id:``/``retry:`` fields and empty events are skipped.
    """

    __slots__ = ("_data", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = (self._tail + chunk).split(b"\n") if self._tail else chunk.split(b"\n")
        self._tail = lines.pop()
        out: list[bytes] = []
        data = self._data
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    out.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
        return out

    def close(self) -> list[bytes]:
        """Payloads of an event the stream ended without a blank line after."""
        out = self.feed(b"\n\n") if self._tail or self._data else []
        return out


def _logprob(entry: dict[str, Any]) -> TokenLogprob:
    token = entry.get("token") or ""
    raw = entry.get("bytes")
    data = bytes(raw) if raw is not None else token.encode()
    top = tuple(_logprob(t) for t in entry.get("top_logprobs") or ())
    return TokenLogprob(token, data, float(entry.get("logprob") or 0.0), top)


def chat_logprobs(choice: dict[str, Any]) -> tuple[TokenLogprob, ...]:
    """A chat chunk choice's ``logprobs.content`` entries (empty when absent)."""
    lp = choice.get("logprobs")
    if not lp:
        return ()
    return tuple(_logprob(e) for e in lp.get("content") or ())


def legacy_logprobs(choice: dict[str, Any]) -> tuple[TokenLogprob, ...]:
    """A completions chunk choice's legacy ``logprobs`` (``tokens``, ``token_logprobs``,
    ``top_logprobs`` as token → logprob maps)."""
    lp = choice.get("logprobs")
    if not lp:
        return ()
    tokens = lp.get("tokens") or []
    values = lp.get("token_logprobs") or []
    tops = lp.get("top_logprobs") or []
    out = []
    for i, token in enumerate(tokens):
        alts = tops[i] if i < len(tops) and tops[i] else {}
        top = tuple(TokenLogprob(t, t.encode(), float(v)) for t, v in alts.items())
        value = values[i] if i < len(values) and values[i] is not None else 0.0
        out.append(TokenLogprob(token, token.encode(), float(value), top))
    return tuple(out)


def tool_call_parts(delta: dict[str, Any]) -> tuple[ToolCallDelta, ...]:
    """A chat delta's ``tool_calls`` entries as core parts."""
    calls = delta.get("tool_calls")
    if not calls:
        return ()
    parts = []
    for position, call in enumerate(calls):
        fn = call.get("function") or {}
        part = ToolCallDelta(
            index=call.get("index", position),
            id=call.get("id"),
            name=fn.get("name"),
            arguments=fn.get("arguments") or "",
        )
        if not isinstance(part.arguments, str) or not isinstance(part.name, str | None):
            raise TypeError("a function call's name and arguments are strings")
        parts.append(part)
    return tuple(parts)


def finish_reason(value: str) -> FinishReason:
    """The core reason for a wire ``finish_reason`` (unknown ones, e.g. ``content_filter``,
    count as ``stop``)."""
    return FINISH_REASONS.get(value, FinishReason.STOP)


class StreamParser:
    """Folds one stream's events into core deltas, remembering what the end needs: the
    content-chunk count of each choice, the finish reasons, the stop string that ended each
    choice (vLLM's ``stop_reason``, which a ``modelgrid engine`` worker sends too, when it is
    one of the request's stop strings), and the usage object.

    Args:
        request: The request being streamed (``n``, chat or raw prompt, ``logprobs``).
        errors: Builds the error raised for an error event or a malformed one, from its
            message and code (the engine words and types it).
    """

    __slots__ = (
        "chat",
        "counts",
        "errors",
        "finished",
        "logprobs",
        "matched",
        "n",
        "stops",
        "usage",
    )

    def __init__(
        self, request: InferenceRequest, errors: Callable[[str, str | None], Exception]
    ) -> None:
        self.n = request.n
        self.chat = request.prompt is None
        self.logprobs = request.sampling.logprobs
        self.errors = errors
        self.counts = [0] * request.n
        self.finished: dict[int, FinishReason] = {}
        self.stops = request.sampling.stop
        self.matched: dict[int, str] = {}
        self.usage: dict[str, Any] | None = None

    def event(self, data: bytes) -> list[Delta] | None:
        """The deltas of one event's payload, one per choice with content; ``None`` for
        ``[DONE]``. ``completion_tokens`` counts content chunks (or log-probability entries).

        Raises:
            Exception: from ``errors``, for an error event or a payload that is not JSON.
        """
        if data == DONE:
            return None
        try:
            obj = json.loads(data)
        except ValueError:
            raise self.errors("malformed event", None) from None
        return self._fold(obj) if isinstance(obj, dict) else []

    def whole(self, body: bytes) -> list[Delta]:
        """The deltas of a non-streamed response body (``chat.completion`` or
        ``text_completion``): one per choice with content. Without a usage object, a choice's
        ``completion_tokens`` is its log-probability entries, else ``ceil(characters / 4)``.

        Raises:
            Exception: from ``errors``, for an error body or one that is not a JSON object.
        """
        try:
            obj = json.loads(body)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("choices", []), list):
            raise self.errors("malformed response body", None)
        choices = obj.get("choices") or ()
        if not all(isinstance(c, dict) for c in choices):
            raise self.errors("malformed response body", None)
        if self.chat:
            obj["choices"] = [{**c, "delta": c.get("message") or {}} for c in choices]
        out = self._fold(obj)
        if self.usage is None:
            out = [replace(d, completion_tokens=_estimate_tokens(d)) for d in out]
            for d in out:
                self.counts[d.index] = d.completion_tokens
        return out

    def _fold(self, obj: dict[str, Any]) -> list[Delta]:
        """One event's (or body's) choices as deltas; a payload of the wrong shape (a choice
        that is not an object, a non-integer index, non-string text…) is a malformed one."""
        if "error" in obj:
            message, code, _ = error_fields(obj)
            raise self.errors(message, code)
        try:
            return self._choices(obj)
        except (AttributeError, TypeError, ValueError):
            raise self.errors("malformed event", None) from None

    def _choices(self, obj: dict[str, Any]) -> list[Delta]:
        if obj.get("usage"):
            usage = obj["usage"]
            self.usage = usage if isinstance(usage, dict) else None
        out: list[Delta] = []
        for choice in obj.get("choices") or ():
            index = choice.get("index", 0)
            if not 0 <= index < self.n:
                continue
            if self.chat:
                delta = choice.get("delta") or {}
                text = delta.get("content") or ""
                parts = tool_call_parts(delta)
                lps = chat_logprobs(choice) if self.logprobs else ()
            else:
                text, parts = choice.get("text") or "", ()
                lps = legacy_logprobs(choice) if self.logprobs else ()
            if not isinstance(text, str) or not isinstance(index, int):
                raise TypeError("content and index must be a string and an integer")
            if text or parts or lps:
                self.counts[index] += len(lps) or 1
                out.append(Delta(index, text, self.counts[index], None, parts, lps))
            if reason := choice.get("finish_reason"):
                self.finished[index] = finish_reason(reason)
                stop = choice.get("stop_reason")
                if isinstance(stop, str) and stop in self.stops:
                    self.matched[index] = stop
        return out


def _estimate_tokens(delta: Delta) -> int:
    """A whole answer's token count without a usage object: its log-probability entries,
    else ``ceil(characters / 4)`` (OpenAI's rule of thumb), at least 1."""
    chars = len(delta.text) + sum(len(p.arguments) + len(p.name or "") for p in delta.tool_calls)
    return len(delta.logprobs) or max(1, -(-chars // 4))


def error_fields(obj: Any) -> tuple[str, str | None, str | None]:
    """(message, code, param) from an error body in any of the shapes servers use:
    OpenAI's ``{"error": {...}}``, vLLM's older ``{"object": "error", "message": …}``,
    FastAPI's ``{"detail": …}``, or ``{"error": "text"}``."""
    if not isinstance(obj, dict):
        return (str(obj)[:500] if obj else "", None, None)
    err = obj.get("error", obj)
    if isinstance(err, str):
        return err, None, None
    if not isinstance(err, dict):
        return str(err)[:500], None, None
    message = err.get("message") or err.get("detail") or ""
    if not isinstance(message, str):
        message = json.dumps(message)[:500]
    code = err.get("code")
    param = err.get("param")
    return (
        message,
        code if isinstance(code, str) else None,
        param if isinstance(param, str) else None,
    )


__all__ = [
    "DONE",
    "SSEDecoder",
    "StreamParser",
    "chat_logprobs",
    "encode",
    "error_fields",
    "finish_reason",
    "legacy_logprobs",
    "request_body",
    "request_path",
    "tokenize_body",
    "tool_call_parts",
]
