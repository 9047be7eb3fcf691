"""OpenAI's Vector Stores API, request side, and the checks of its bounds.

References: https://platform.openai.com/docs/api-reference/vector-stores,
…/vector-stores-files, …/vector-stores-file-batches and the ``openai`` SDK's
``types/vector_store_*_params.py`` / ``types/vector_stores/*_params.py`` (the wire truth
here). Bounds: ``static`` chunking takes ``max_chunk_size_tokens`` 100..4096 and
``chunk_overlap_tokens`` ≥ 0 and at most half of it; ``auto`` is 800 / 400;
``expires_after`` is ``{"anchor": "last_active_at", "days": 1..365}``; ``metadata`` at most
16 pairs of 64 / 512 characters; ``max_num_results`` 1..50 (default 10).

A search's ``query`` list is capped at ``MAX_SEARCH_QUERIES`` (10): OpenAI documents no cap,
but each query is one embedding and, with ``rewrite_query``, one billed model call, so an
uncapped list is unbounded work for one request; ten is several times what its own
``file_search`` tool sends for one turn.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.text import Label, Prose

AUTO_CHUNK_TOKENS = 800
AUTO_OVERLAP_TOKENS = 400
STATIC_MIN_TOKENS = 100
STATIC_MAX_TOKENS = 4096
EXPIRY_DAYS_MAX = 365
METADATA_MAX_PAIRS = 16
MAX_NUM_RESULTS = 50
DEFAULT_NUM_RESULTS = 10
FILE_IDS_MAX = 500
MAX_SEARCH_QUERIES = 10
FileStatus = Literal["in_progress", "completed", "cancelled", "failed"]


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=EXPIRY_DAYS_MAX)


class VectorStoreCreate(BaseModel):
    """``POST /v1/vector_stores``."""

    name: Label | None = Field(default=None, max_length=200)
    description: Prose | None = Field(default=None, max_length=2000)
    file_ids: list[str] | None = Field(default=None, max_length=FILE_IDS_MAX)
    chunking_strategy: dict[str, Any] | None = None
    expires_after: ExpiresAfter | None = None
    metadata: dict[str, str] | None = None


class VectorStoreUpdate(BaseModel):
    """``POST /v1/vector_stores/{id}``: only the fields sent change (``expires_after:
    null`` removes the policy)."""

    name: Label | None = Field(default=None, max_length=200)
    expires_after: ExpiresAfter | None = None
    metadata: dict[str, str] | None = None


class VectorStoreFileCreate(BaseModel):
    """``POST /v1/vector_stores/{id}/files``."""

    file_id: str = Field(min_length=1, max_length=64)
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class VectorStoreFileUpdate(BaseModel):
    """``POST /v1/vector_stores/{id}/files/{file_id}``: the file's attributes."""

    attributes: dict[str, Any] | None


class BatchFile(BaseModel):
    file_id: str = Field(min_length=1, max_length=64)
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class FileBatchCreate(BaseModel):
    """``POST /v1/vector_stores/{id}/file_batches``: ``file_ids`` (sharing ``attributes``
    and ``chunking_strategy``) or ``files`` (each its own), not both."""

    file_ids: list[str] | None = Field(default=None, max_length=FILE_IDS_MAX)
    files: list[BatchFile] | None = Field(default=None, max_length=FILE_IDS_MAX)
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class RankingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ranker: Literal["none", "auto", "default-2024-11-15"] | None = None
    score_threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class VectorStoreSearch(BaseModel):
    """``POST /v1/vector_stores/{id}/search``."""

    query: str | list[str]
    filters: dict[str, Any] | None = None
    max_num_results: StrictInt = Field(default=DEFAULT_NUM_RESULTS, ge=1, le=MAX_NUM_RESULTS)
    ranking_options: RankingOptions | None = None
    rewrite_query: StrictBool | None = None

    def queries(self) -> list[str]:
        """``query`` as a list of one or more strings (not yet checked for length or
        blankness: ``serving.knowledge.check_query`` does that).

        Raises:
            InvalidRequestError: an empty list, or more than ``MAX_SEARCH_QUERIES``
                (``param`` ``query``).
        """
        queries = [self.query] if isinstance(self.query, str) else list(self.query)
        if not queries:
            raise InvalidRequestError("'query' must not be empty.", param="query")
        if len(queries) > MAX_SEARCH_QUERIES:
            raise InvalidRequestError(
                f"'query' has {len(queries)} queries; at most {MAX_SEARCH_QUERIES}.",
                param="query",
            )
        return queries


def chunking_bounds(
    raw: dict[str, Any] | None, param: str = "chunking_strategy"
) -> tuple[int, int]:
    """``(max_chunk_size_tokens, chunk_overlap_tokens)`` of a chunking strategy (``None`` and
    ``auto``: 800 / 400).

    Raises:
        InvalidRequestError: another type, or ``static`` bounds outside OpenAI's (the
            ``param`` names the field).
    """
    if raw is None or raw.get("type") == "auto":
        if raw is not None and set(raw) - {"type"}:
            raise InvalidRequestError(
                f"'{param}' of type 'auto' takes no other field.", param=param
            )
        return AUTO_CHUNK_TOKENS, AUTO_OVERLAP_TOKENS
    if raw.get("type") != "static":
        raise InvalidRequestError(
            f"'{param}.type' must be 'auto' or 'static'.", param=f"{param}.type"
        )
    static = raw.get("static")
    if not isinstance(static, dict):
        raise InvalidRequestError(
            f"'{param}.static' is required for type 'static'.", param=f"{param}.static"
        )
    size = static.get("max_chunk_size_tokens")
    overlap = static.get("chunk_overlap_tokens")
    where = f"{param}.static"
    if not isinstance(size, int) or isinstance(size, bool):
        raise InvalidRequestError(
            f"'{where}.max_chunk_size_tokens' must be an integer.",
            param=f"{where}.max_chunk_size_tokens",
        )
    if not STATIC_MIN_TOKENS <= size <= STATIC_MAX_TOKENS:
        raise InvalidRequestError(
            f"'{where}.max_chunk_size_tokens' must be {STATIC_MIN_TOKENS}..{STATIC_MAX_TOKENS};"
            f" got {size}.",
            param=f"{where}.max_chunk_size_tokens",
        )
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise InvalidRequestError(
            f"'{where}.chunk_overlap_tokens' must be a non-negative integer.",
            param=f"{where}.chunk_overlap_tokens",
        )
    if overlap > size // 2:
        raise InvalidRequestError(
            f"'{where}.chunk_overlap_tokens' must not exceed half of max_chunk_size_tokens "
            f"({size // 2}); got {overlap}.",
            param=f"{where}.chunk_overlap_tokens",
        )
    return size, overlap


def check_metadata(metadata: dict[str, str] | None, param: str = "metadata") -> None:
    """Raises ``InvalidRequestError`` past 16 pairs or 64 / 512 characters."""
    if metadata is None:
        return
    if len(metadata) > METADATA_MAX_PAIRS:
        raise InvalidRequestError(
            f"'{param}' has {len(metadata)} pairs; at most {METADATA_MAX_PAIRS}.", param=param
        )
    for key, value in metadata.items():
        if len(key) > 64 or len(value) > 512:
            raise InvalidRequestError(
                f"'{param}' keys are at most 64 characters and values at most 512.",
                param=f"{param}.{key[:64]}",
            )


def chunking_object(max_tokens: int, overlap_tokens: int) -> dict[str, Any]:
    """A file's ``chunking_strategy`` as the API answers it (``auto`` is shown as the
    ``static`` sizes it stands for, as OpenAI does)."""
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": max_tokens, "chunk_overlap_tokens": overlap_tokens},
    }


__all__ = [
    "FileBatchCreate",
    "VectorStoreCreate",
    "VectorStoreFileCreate",
    "VectorStoreFileUpdate",
    "VectorStoreSearch",
    "VectorStoreUpdate",
    "check_metadata",
    "chunking_bounds",
    "chunking_object",
]
