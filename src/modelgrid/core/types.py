"""Core inference types shared by serving and engines; free of any wire format.

Shapes follow the OpenAI chat API's concepts (messages, sampling parameters, usage) without
its JSON spelling, so the DashScope and OpenAI protocols convert to the same request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

_JURISDICTION = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")


def jurisdiction_code(value: str) -> str:
    """A jurisdiction code as stored and compared: an ISO 3166 country (``DE``), a bloc
    (``EU``) or a subdivision (``US-CA``) — ASCII letters and digits, groups joined by ``-``,
    2 to 16 characters — upper-cased.

    Raises:
        ValueError: anything else (spaces, other characters, non-ASCII letters: ``"ß"`` must
            not become ``"SS"``).
    """
    if not (2 <= len(value) <= 16 and _JURISDICTION.fullmatch(value)):
        raise ValueError(
            "a jurisdiction is 2-16 ASCII letters or digits, groups joined by '-' (DE, EU, US-CA)"
        )
    return value.upper()


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CANCELLED = "cancelled"  # client went away; never sent on the wire
    ERROR = "error"  # engine failed mid-generation; never sent on the wire


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the assistant made: ``arguments`` is the JSON text of its arguments."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat message; ``content`` is plain text (array parts already joined).

    ``tool_calls`` are an assistant turn's calls; ``tool_call_id`` ties a ``tool`` turn (the
    function's result, in ``content``) to the call it answers.
    """

    role: str
    content: str | None = None
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call.

    Attributes:
        name: Function name.
        description: What it does (shown to the model).
        parameters: JSON Schema of its arguments object; ``None`` means "any object".
    """

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolChoiceMode(StrEnum):
    NONE = "none"  # never call; tools are not shown to the model
    AUTO = "auto"  # the model decides
    REQUIRED = "required"  # at least one call, decoding constrained to calls
    FUNCTION = "function"  # exactly the function named in ``ToolChoice.name``


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    name: str | None = None


class ResponseFormatKind(StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"  # any JSON object
    JSON_SCHEMA = "json_schema"  # a JSON value valid against ``ResponseFormat.schema``


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """A constraint on the output text, enforced while decoding."""

    kind: ResponseFormatKind = ResponseFormatKind.TEXT
    schema: dict[str, Any] | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Decoding controls.

    Attributes:
        max_tokens: Cap on generated tokens; ``None`` means "up to the context window".
        temperature: Softmax temperature; 0 means greedy.
        top_p: Nucleus mass in (0, 1].
        stop: Stop strings; generation ends before the first occurrence, which is never emitted.
        seed: RNG seed; same seed and same request give the same output, whatever the
            replica's prefix cache holds (without a seed, a cached prompt and an uncached one
            may differ in the logits' last bits, so even a greedy answer may differ).
        presence_penalty / frequency_penalty: OpenAI's additive penalties in [-2, 2].
        top_k: Keep only the k most likely tokens (0 = off; DashScope's ``top_k``).
        repetition_penalty: Multiplicative penalty on repeated tokens (1.0 = off; DashScope's
            ``repetition_penalty``, llama.cpp's ``repeat_penalty``).
        response_format: Output constraint (JSON object / JSON Schema); ``None`` = free text.
        logprobs: Report each generated token's log probability (natural log, under the
            model's raw distribution, before temperature or constraints).
        top_logprobs: With ``logprobs``, also the this-many most likely tokens at each step.
    """

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(frozen=True, slots=True)
class TokenizeOptions:
    """How an engine's ``tokenize`` renders a request (vLLM's ``/tokenize`` flags).

    Attributes:
        add_special_tokens: A raw ``prompt``: add the tokenizer's special tokens (a BOS, for
            models that have one), as generation does. Messages: ignored (the chat template
            places them).
        add_generation_prompt: Messages: end with the opening of the assistant's turn, as
            generation does. A raw ``prompt``: ignored.
    """

    add_special_tokens: bool = True
    add_generation_prompt: bool = True


@dataclass(frozen=True, slots=True)
class RoutingHints:
    """What routing must respect and should prefer for one request.

    Attributes:
        allowed_regions: Region ids the request may run in (the workspace's set narrowed by
            the key's); ``None`` means any region. Residency: nothing is ever sent elsewhere.
        allowed_jurisdictions: Jurisdiction codes (``jurisdiction_code``) whose regions
            the request may run in, on top of ``allowed_regions`` (a region must pass both);
            ``None`` means any. A region without a jurisdiction never passes this rule.
        preferred_region: The region the caller asked for (``X-Modelgrid-Region``), if any.
        home_region: The workspace's home region, preferred after ``preferred_region``.
        affinity_replica: The replica that served this conversation's previous turn (a
            chained Responses API call): it likely holds the prompt's prefix in its cache,
            so it is preferred whenever it is allowed, available and not overloaded.
    """

    allowed_regions: frozenset[str] | None = None
    preferred_region: str | None = None
    home_region: str | None = None
    allowed_jurisdictions: frozenset[str] | None = None
    affinity_replica: str | None = None

    def allows(self, region: str, jurisdiction: str = "") -> bool:
        """Whether residency lets the request run in ``region``, whose law is
        ``jurisdiction`` (the topology's ``Region.jurisdiction``; empty if it has none)."""
        if self.allowed_regions is not None and region not in self.allowed_regions:
            return False
        codes = self.allowed_jurisdictions
        return codes is None or (bool(jurisdiction) and jurisdiction in codes)


@dataclass(slots=True)
class InferenceRequest:
    """A request as the engines see it.

    Attributes:
        request_id: The gateway's request id (also the usage record's key).
        model: The served model id.
        messages: The conversation (chat) — exclusive with ``prompt``.
        prompt: Raw text prompt (completions) — exclusive with ``messages``.
        sampling: Decoding controls.
        n: Number of choices to generate (each gets seed ``seed + index``).
        tools: Functions the model may call (chat only).
        tool_choice: Whether and which function to call; ``None`` means ``auto`` when there
            are tools.
        parallel_tool_calls: Whether one turn may contain several calls.
        routing: Where the request may and would rather run (set by serving from the
            caller's principal and headers; ``None`` means no constraint).
        stream: The caller reads deltas as they come. ``False`` (a non-streamed response):
            only the whole answer matters, so an engine may produce it in one piece (an
            upstream is then called without ``stream``: one JSON body instead of an event
            per token).
        preemptible: A batch line, the lowest priority: once cancelled (preempted by online
            traffic), an engine may abort even the decode step it is in, its work discarded.
            Online requests are never cut inside a step, and pay nothing for the check.
        continue_final_message: The last message is an assistant turn to go on with rather
            than a finished one (Anthropic's "prefill"; vLLM's ``continue_final_message``): the
            prompt ends inside that turn, after its text, and the output is its continuation.
        trace_headers: The W3C trace context of the gateway's span for this call
            (``traceparent``), sent with the upstream HTTP call so the replica's span joins
            the trace; ``None`` (OpenTelemetry off): nothing is sent.
        prefix_fingerprint: The prompt's prefix block hashes (``routing.prefix``), set by
            the routed engine; an upstream replica with a ``prefix_header`` sends them, for
            a pool that routes by prefix (Ray Serve, ``docs/fleet.md``).
    """

    request_id: str
    model: str
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    routing: RoutingHints | None = None
    stream: bool = True
    preemptible: bool = False
    continue_final_message: bool = False
    trace_headers: dict[str, str] | None = None
    prefix_fingerprint: tuple[int, ...] = ()

    @property
    def tool_mode(self) -> ToolChoiceMode:
        """The effective tool choice: ``none`` without tools, ``auto`` by default."""
        if not self.tools:
            return ToolChoiceMode.NONE
        return self.tool_choice.mode if self.tool_choice else ToolChoiceMode.AUTO


@dataclass(frozen=True, slots=True)
class CallContext:
    """Per-call facts from the edge.

    Attributes:
        request_id: Server-generated id (32 hex), the usage ledger's idempotency key.
        client_request_id: The client's ``x-request-id``, if it sent a well-formed one.
        started: ``time.perf_counter()`` when the request arrived (for TTFT and latency).
        response_headers: Headers to add to the response, whatever it turns out to be
            (the rate-limit headers); the edge middleware sends them.
        requested_region: The region the client asked for (``X-Modelgrid-Region``), if any.
        trace_carrier: The caller's W3C trace context (``traceparent``, ``tracestate``), read
            only where OpenTelemetry is on (``serving.telemetry``): the call's span continues
            the caller's trace.
        preemptible: The call is a batch line (``InferenceRequest.preemptible``): set by the
            batch runner, and by an engine worker for a gateway's batch line
            (``x-modelgrid-priority: batch``).
    """

    request_id: str
    client_request_id: str | None
    started: float
    response_headers: dict[str, str] = field(default_factory=dict)
    requested_region: str | None = None
    preemptible: bool = False
    trace_carrier: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts from the model's own tokenizer; ``cached_tokens``: prompt tokens the
    replica served from its prefix cache (part of ``prompt_tokens``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """Part of the choice's tool call number ``index`` (0, 1, … in the order made).

    The first part of a call carries ``id`` and ``name``; the ``arguments`` of its parts
    concatenate to the arguments' JSON text. An engine may send a whole call as one part.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A token's log probability (natural log); ``top`` holds the most likely alternatives at
    that step, most likely first (empty when not asked for). ``token`` is the text of the
    token's bytes, or ``bytes:\\x..`` escapes when they are not whole UTF-8 characters."""

    token: str
    token_bytes: bytes
    logprob: float
    top: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Delta:
    """One increment of a generation for choice ``index``.

    ``text`` is always whole UTF-8 characters and never contains (part of) a stop string.
    ``finish_reason`` is set on the last delta of the choice only; ``completion_tokens`` is the
    running number of tokens generated for that choice so far. ``tool_calls`` are parts of the
    function calls parsed from the output (never also in ``text``); ``logprobs`` covers the
    tokens generated since the previous delta when ``SamplingParams.logprobs`` is on (so over
    a choice there is one entry per completion token). ``matched_stop`` is the stop string
    (one of ``SamplingParams.stop``) that ended the choice, on its finish delta only; ``None``
    when it ended otherwise, or when the engine cannot tell (an upstream that does not report
    it the way vLLM does, as ``stop_reason``).
    """

    index: int
    text: str
    completion_tokens: int
    finish_reason: FinishReason | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()
    matched_stop: str | None = None


__all__ = [
    "CallContext",
    "ChatMessage",
    "Delta",
    "FinishReason",
    "InferenceRequest",
    "ResponseFormat",
    "ResponseFormatKind",
    "RoutingHints",
    "SamplingParams",
    "TokenLogprob",
    "TokenUsage",
    "TokenizeOptions",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolChoiceMode",
]
