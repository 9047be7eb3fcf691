"""Parameter rules shared by the OpenAI chat and completions endpoints."""

from __future__ import annotations

from modelgrid.core.errors import InvalidRequestError

MAX_STOP_SEQUENCES = 4  # the reference allows "up to 4 sequences"


def stop_sequences(stop: str | list[str] | None) -> tuple[str, ...]:
    """``stop`` as a tuple of non-empty strings (at most four, as the reference allows).

    Raises:
        InvalidRequestError: more than four sequences, or an empty one (param ``stop``).
    """
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


__all__ = ["MAX_STOP_SEQUENCES", "stop_sequences"]
