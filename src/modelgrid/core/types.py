"""Core inference types shared by serving and engines; free of any wire format.

Shapes follow the OpenAI chat API's concepts (messages, sampling parameters, usage) without
its JSON spelling, so the DashScope and OpenAI protocols convert to the same request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CANCELLED = "cancelled"  # client went away; never sent on the wire
    ERROR = "error"  # engine failed mid-generation; never sent on the wire


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat message; ``content`` is plain text (array parts already joined)."""

    role: str
    content: str | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Decoding controls.

    Attributes:
        max_tokens: Cap on generated tokens; ``None`` means "up to the context window".
        temperature: Softmax temperature; 0 means greedy.
        top_p: Nucleus mass in (0, 1].
        stop: Stop strings; generation ends before the first occurrence, which is never emitted.
        seed: RNG seed; same seed and same request give the same output.
        presence_penalty / frequency_penalty: OpenAI's additive penalties in [-2, 2].
    """

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


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
    """

    request_id: str
    model: str
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1


@dataclass(frozen=True, slots=True)
class CallContext:
    """Per-call facts from the edge.

    Attributes:
        request_id: Server-generated id (32 hex), the usage ledger's idempotency key.
        client_request_id: The client's ``x-request-id``, if it sent a well-formed one.
        started: ``time.perf_counter()`` when the request arrived (for TTFT and latency).
    """

    request_id: str
    client_request_id: str | None
    started: float


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts from the model's own tokenizer."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Delta:
    """One increment of a generation for choice ``index``.

    ``text`` is always whole UTF-8 characters and never contains (part of) a stop string.
    ``finish_reason`` is set on the last delta of the choice only; ``completion_tokens`` is the
    running number of tokens generated for that choice so far.
    """

    index: int
    text: str
    completion_tokens: int
    finish_reason: FinishReason | None = None


__all__ = [
    "CallContext",
    "ChatMessage",
    "Delta",
    "FinishReason",
    "InferenceRequest",
    "SamplingParams",
    "TokenUsage",
]
