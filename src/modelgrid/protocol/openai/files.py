"""OpenAI's Files API objects (https://platform.openai.com/docs/api-reference/files).

The File object, the list page (cursor ``after``, ``has_more``) and the deletion answer. The
upload itself is multipart form data (``file``, ``purpose``, ``expires_after[anchor]``,
``expires_after[seconds]``), read by the edge (``api.routers.files``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Purpose = Literal["batch", "batch_output", "assistants"]
# ``batch_output`` files are written by batches; ``assistants`` files feed vector stores
UPLOAD_PURPOSES: tuple[str, ...] = ("batch", "assistants")
EXPIRES_AFTER_MIN_S = 3600  # OpenAI's range for ``expires_after[seconds]``: 1 hour…
EXPIRES_AFTER_MAX_S = 2_592_000  # …30 days


class FileObject(BaseModel):
    """A stored file. Times are unix seconds; ``status`` is always ``processed`` (an upload
    is checked before it is stored: a refused one leaves nothing)."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: Purpose
    status: Literal["processed"] = "processed"


class FileList(BaseModel):
    """A page of files (``first_id`` / ``last_id``: the page's ends, ``None`` when empty)."""

    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


__all__ = [
    "EXPIRES_AFTER_MAX_S",
    "EXPIRES_AFTER_MIN_S",
    "UPLOAD_PURPOSES",
    "FileDeleted",
    "FileList",
    "FileObject",
    "Purpose",
]
