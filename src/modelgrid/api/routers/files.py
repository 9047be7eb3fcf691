"""OpenAI's Files API: ``/v1/files`` (and under ``/compatible-mode`` for DashScope users).

``POST /v1/files`` takes multipart form data (``file``, ``purpose``, optional
``expires_after[anchor]=created_at`` and ``expires_after[seconds]``); Starlette spools the
upload to a temporary file, which ``control.files`` reads in chunks, checks line by line and
stores. Its body may be as large as ``batch.max_file_bytes`` plus room for the form
(``upload_body_limits``, applied by the edge middleware to this path only). ``GET`` lists,
shows and streams a file's content; ``DELETE`` removes it. Tenant keys only; every file is
its workspace's (another workspace's id is a 404).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.datastructures import FormData, UploadFile

from modelgrid.api.deps import CallDep
from modelgrid.api.paging import Cursor, ForwardOnly
from modelgrid.config import BatchSettings
from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.openai.files import FileObject
from modelgrid.tenancy import audit

router = APIRouter(prefix="/v1", tags=["files"])

PREFIXES = ("", "/compatible-mode")  # where this router is mounted
FORM_ROOM_BYTES = 1024 * 1024  # multipart boundaries and the small fields around the file
READ_CHUNK_BYTES = 1024 * 1024


def upload_body_limits(batch: BatchSettings) -> dict[str, int]:
    """The body limit of the upload route, by path: a whole input file and its form."""
    return {f"{p}/v1/files": batch.max_file_bytes + FORM_ROOM_BYTES for p in PREFIXES}


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"'{name}' must be a plain form field.", param=name)
    return value


def _expires_after(form: FormData) -> int | None:
    anchor = _field(form, "expires_after[anchor]")
    seconds = _field(form, "expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequestError(
            "'expires_after[anchor]' must be 'created_at'.",
            param="expires_after[anchor]",
            code="invalid_value",
        )
    if seconds is None or not seconds.strip().isdigit():
        raise InvalidRequestError(
            "'expires_after[seconds]' must be a whole number of seconds.",
            param="expires_after[seconds]",
            code="invalid_value",
        )
    return int(seconds)


def _file_json(obj: FileObject, status_code: int = 200) -> JSONResponse:
    return JSONResponse(obj.model_dump(mode="json"), status_code=status_code)


@router.post("/files")
async def create_file(request: Request, call: CallDep) -> JSONResponse:
    async with request.form(max_files=1, max_fields=16) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequestError(
                "Missing required parameter: 'file' (multipart form data, the file's part).",
                param="file",
                code="missing_required_parameter",
            )
        purpose = _field(form, "purpose")
        if purpose is None:
            raise InvalidRequestError(
                "Missing required parameter: 'purpose'.",
                param="purpose",
                code="missing_required_parameter",
            )
        expires_after_s = _expires_after(form)
        spooled = upload.file  # read in the worker thread that checks and writes the file
        obj = await call.state.control.files.create(
            call.principal,
            filename=upload.filename or "",
            purpose=purpose,
            chunks=iter(lambda: spooled.read(READ_CHUNK_BYTES), b""),
            expires_after_s=expires_after_s,
        )
    return _file_json(obj)


@router.get("/files")
async def list_files(
    call: CallDep,
    _: ForwardOnly,
    purpose: str | None = None,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc",
) -> JSONResponse:
    page = await call.state.control.files.list(
        call.principal.workspace_id, purpose=purpose, after=after, limit=limit, order=order
    )
    return JSONResponse(page.model_dump(mode="json"))


@router.get("/files/{file_id}")
async def retrieve_file(file_id: str, call: CallDep) -> JSONResponse:
    return _file_json(await call.state.control.files.get(call.principal.workspace_id, file_id))


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, call: CallDep) -> StreamingResponse:
    chunks = await call.state.control.files.content(call.principal.workspace_id, file_id)
    return StreamingResponse(chunks, media_type="application/octet-stream")


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, call: CallDep) -> JSONResponse:
    gone = await call.state.control.files.delete(
        call.principal.workspace_id, file_id, actor=audit.api_actor(call.principal.key_id)
    )
    return JSONResponse(gone.model_dump(mode="json"))


__all__ = ["router", "upload_body_limits"]
