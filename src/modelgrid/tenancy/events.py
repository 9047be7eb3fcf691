"""The usage event: one per request that reached an engine."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One request's usage.

    Attributes:
        request_id: Idempotency key (server-generated).
        client_request_id: The client's ``x-request-id``, for tracing only.
        api_key_id / workspace_id: Who is billed.
        model: Served model id.
        endpoint: e.g. ``chat.completions``.
        prompt_tokens / completion_tokens: Exact tokenizer counts (abandoned streams: the
            tokens produced so far). ``cached_tokens``: prompt tokens served from cache.
        ttft_ms: Time to first token (None when no token was produced).
        total_ms: Request start to end.
        last_token_ms: Request start to its last output token (None when no token was
            produced); ``last_token_ms - ttft_ms`` over ``completion_tokens - 1`` is its time
            per output token. Apart from ``total_ms``: an engine may end its stream a step
            after the last token (llama-cpp-python evaluates it before it stops).
        status: HTTP status the request ended with (499 when the client went away).
        finish_reason: ``stop``, ``length``, ``cancelled``, ``error``.
        region: Where it ran (None for the embedded default).
        replica: The replica that answered, after any failover (None: none was placed).
        cost_micros / currency / price_id: Set by pricing (``tenancy.pricing``).
        batch_id / custom_id: The batch and line it answered (batch lines only).
    """

    request_id: str
    client_request_id: str | None
    api_key_id: str | None
    workspace_id: str | None
    model: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: int | None
    total_ms: int
    status: int
    finish_reason: str | None
    created_at: datetime
    cached_tokens: int = 0
    region: str | None = None
    replica: str | None = None
    cost_micros: int = 0
    currency: str | None = None
    price_id: int | None = None
    batch_id: str | None = None
    custom_id: str | None = None
    last_token_ms: int | None = None


_FIELDS = tuple(f.name for f in fields(UsageEvent))


def as_row(event: UsageEvent) -> dict[str, object]:
    """The event's fields as a flat dict (a shallow copy: every field is a scalar, so
    ``dataclasses.asdict``'s recursive deep copy would only cost time on the hot path)."""
    return {name: getattr(event, name) for name in _FIELDS}


def now_utc() -> datetime:
    return datetime.now(UTC)


__all__ = ["UsageEvent", "as_row", "now_utc"]
