"""Wire models of OpenAI's Batch API (https://platform.openai.com/docs/api-reference/batch).

``BatchCreate`` is the body of ``POST /v1/batches``; ``batch_object`` renders a batch as the
reference's ``batch`` object (timestamps in Unix seconds, ``request_counts``, and the
``usage`` totals of its finished lines).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

BatchEndpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
STATUSES = (
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
)
FINAL = frozenset({"failed", "completed", "expired", "cancelled"})


class BatchCreate(BaseModel):
    """``POST /v1/batches``: ``metadata`` holds up to 16 string pairs (keys up to 64
    characters, values up to 512), as the reference allows."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: Annotated[str, Field(min_length=1, max_length=64)]
    endpoint: BatchEndpoint
    completion_window: Literal["24h"]
    metadata: (
        Annotated[
            dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
            Field(max_length=16),
        ]
        | None
    ) = None


def unix(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def batch_object(b: Any) -> dict[str, Any]:
    """The reference's ``batch`` object for a ``storage.models.Batch`` row (aware times)."""
    return {
        "id": b.id,
        "object": "batch",
        "endpoint": b.endpoint,
        "model": b.model,
        "errors": {"object": "list", "data": b.errors} if b.errors else None,
        "input_file_id": b.input_file_id,
        "completion_window": b.completion_window,
        "status": b.status,
        "output_file_id": b.output_file_id,
        "error_file_id": b.error_file_id,
        "created_at": unix(b.created_at),
        "in_progress_at": unix(b.in_progress_at),
        "expires_at": unix(b.expires_at),
        "finalizing_at": unix(b.finalizing_at),
        "completed_at": unix(b.completed_at),
        "failed_at": unix(b.failed_at),
        "expired_at": unix(b.expired_at),
        "cancelling_at": unix(b.cancelling_at),
        "cancelled_at": unix(b.cancelled_at),
        "request_counts": {"total": b.total, "completed": b.completed, "failed": b.failed},
        "usage": {
            "input_tokens": b.prompt_tokens,
            "output_tokens": b.completion_tokens,
            "total_tokens": b.prompt_tokens + b.completion_tokens,
        },
        "metadata": b.metadata_,
    }


__all__ = ["FINAL", "STATUSES", "BatchCreate", "BatchEndpoint", "batch_object"]
