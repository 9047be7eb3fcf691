"""Knowledge bases: ``/v1/knowledge_bases`` (modelgrid's own API, ``docs/knowledge.md``).

Tenant keys; every knowledge base and document is its workspace's (another workspace's id is
a 404). ``POST /v1/knowledge_bases/{id}/documents`` takes multipart form data (``file``, and
an optional ``format``: ``text``, ``markdown``, ``html`` or ``pdf``, else from the file's name
or media type; optional ``metadata``, a JSON object, and ``tags``, a JSON array of strings:
``protocol.document_labels``), answers the document ``pending`` and indexes it in the
background (``jobs.indexer``); ``GET`` the document shows its progress. ``POST …/search``
retrieves the best chunks for a query (``hybrid``, ``dense`` or ``lexical``), with
``rerank: true`` re-ranked by the served chat model (``serving.rerank``: one metered request
per candidate). The operations live in ``control.knowledge`` and ``serving.knowledge``;
errors are OpenAI's error object.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import FormData, UploadFile

from modelgrid.api.body import json_body, non_finite
from modelgrid.api.deps import CallDep
from modelgrid.api.paging import Cursor, ForwardOnly
from modelgrid.api.state import AppState, Knowledge
from modelgrid.control.knowledge import LIST_LIMIT_MAX
from modelgrid.core.errors import InvalidRequestError, RequestTooLargeError, ServiceUnavailableError
from modelgrid.protocol.knowledge import (
    KnowledgeBaseCreate,
    SearchHit,
    SearchRequest,
    SearchResults,
)
from modelgrid.serving.rerank import candidates, require_judge, rerank_hits
from modelgrid.tenancy import audit

router = APIRouter(prefix="/v1/knowledge_bases", tags=["knowledge"])
READ_CHUNK_BYTES = 1024 * 1024


def _json(obj: BaseModel) -> JSONResponse:
    return JSONResponse(obj.model_dump(mode="json"))


def _knowledge(state: AppState) -> Knowledge:
    if state.knowledge is None:
        raise ServiceUnavailableError("Knowledge bases are not available in this gateway.")
    return state.knowledge


def _json_field(form: FormData, name: str, shape: str) -> Any:
    """A form field holding JSON, parsed (``None`` when absent; checked by the control
    plane). A field that is there holds a value: the literal ``null`` is refused, not read as
    absence (leave the field out for none).

    Raises:
        InvalidRequestError: a file part, not JSON, ``null``, or a non-finite number in it
            (``param``: ``name``).
    """
    raw = form.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidRequestError(f"'{name}' must be a plain form field.", param=name)
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidRequestError(f"'{name}' must be JSON: an {shape}.", param=name) from None
    if value is None:
        raise InvalidRequestError(
            f"'{name}' must be a JSON {shape}, not null; leave the field out for none.",
            param=name,
        )
    found = non_finite(value)  # Python's json reads NaN, Infinity, and 1e999 as inf
    if found is not None:
        shown = "NaN" if found[1] != found[1] else ("-" if found[1] < 0 else "") + "Infinity"
        raise InvalidRequestError(
            f"'{name}' holds {shown}: numbers must be finite (JSON has no NaN or Infinity).",
            param=name,
        )
    return value


@router.post("")
async def create_knowledge_base(request: Request, call: CallDep) -> JSONResponse:
    body = await json_body(request, KnowledgeBaseCreate)
    kb = await _knowledge(call.state).bases.create(
        call.principal, body, actor=audit.api_actor(call.principal.key_id)
    )
    return _json(kb)


@router.get("")
async def list_knowledge_bases(
    call: CallDep,
    _: ForwardOnly,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = 100,
) -> JSONResponse:
    bases = _knowledge(call.state).bases
    return _json(await bases.list(call.principal.workspace_id, after=after, limit=limit))


@router.get("/{kb_id}")
async def get_knowledge_base(kb_id: str, call: CallDep) -> JSONResponse:
    return _json(await _knowledge(call.state).bases.get(call.principal.workspace_id, kb_id))


@router.delete("/{kb_id}")
async def delete_knowledge_base(kb_id: str, call: CallDep) -> JSONResponse:
    gone = await _knowledge(call.state).bases.delete(
        call.principal.workspace_id, kb_id, actor=audit.api_actor(call.principal.key_id)
    )
    return _json(gone)


@router.post("/{kb_id}/documents")
async def add_document(kb_id: str, request: Request, call: CallDep) -> JSONResponse:
    bases = _knowledge(call.state).bases
    limit = bases.settings.max_document_bytes
    async with request.form(max_files=1, max_fields=8) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequestError(
                "Missing required parameter: 'file' (multipart form data, the file's part).",
                param="file",
                code="missing_required_parameter",
            )
        fmt = form.get("format")
        if fmt is not None and not isinstance(fmt, str):
            raise InvalidRequestError("'format' must be a plain form field.", param="format")
        metadata = _json_field(form, "metadata", "object")
        tags = _json_field(form, "tags", "array of strings")
        data = bytearray()
        while chunk := await upload.read(READ_CHUNK_BYTES):
            data += chunk
            if len(data) > limit:
                raise RequestTooLargeError(
                    f"The document is over {limit} bytes, the most accepted.", param="file"
                )
        doc = await bases.add_document(
            call.principal,
            kb_id,
            filename=upload.filename or "document",
            data=bytes(data),
            content_type=upload.content_type,
            fmt=fmt,
            metadata=metadata,
            tags=tags,
            actor=audit.api_actor(call.principal.key_id),
        )
    return _json(doc)


@router.get("/{kb_id}/documents")
async def list_documents(
    kb_id: str,
    call: CallDep,
    _: ForwardOnly,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = 100,
) -> JSONResponse:
    bases = _knowledge(call.state).bases
    page = await bases.list_documents(call.principal.workspace_id, kb_id, after=after, limit=limit)
    return _json(page)


@router.get("/{kb_id}/documents/{doc_id}")
async def get_document(kb_id: str, doc_id: str, call: CallDep) -> JSONResponse:
    bases = _knowledge(call.state).bases
    return _json(await bases.get_document(call.principal.workspace_id, kb_id, doc_id))


@router.delete("/{kb_id}/documents/{doc_id}")
async def delete_document(kb_id: str, doc_id: str, call: CallDep) -> JSONResponse:
    gone = await _knowledge(call.state).bases.delete_document(
        call.principal.workspace_id, kb_id, doc_id, actor=audit.api_actor(call.principal.key_id)
    )
    return _json(gone)


@router.post("/{kb_id}/search")
async def search(kb_id: str, request: Request, call: CallDep) -> JSONResponse:
    knowledge = _knowledge(call.state)
    body = await json_body(request, SearchRequest)
    judge = None
    if body.rerank:  # refused before anything is embedded (and billed)
        judge = require_judge(knowledge.reranker, param="rerank", instead="set 'rerank' to false")
    kb = await knowledge.bases.row(call.principal.workspace_id, kb_id)
    found = await knowledge.retrieval.search(
        call.principal,
        kb.id,
        kb.embedding_model,
        body.query,
        top_k=body.top_k if judge is None else candidates(body.top_k),
        mode=body.mode,
        ctx=call.ctx,
    )
    hits = [
        SearchHit(
            chunk_id=r.chunk.id,
            document_id=r.chunk.document_id,
            ordinal=r.chunk.ordinal,
            heading=r.chunk.heading,
            text=r.chunk.text,
            tokens=r.chunk.tokens,
            score=r.score,
            dense_rank=r.dense_rank,
            lexical_rank=r.lexical_rank,
        )
        for r in found
    ]
    if judge is not None:
        ranked = await rerank_hits(
            judge, call.principal, body.query, hits, lambda h: h.text, call.ctx
        )
        hits = [h.model_copy(update={"score": p, "rerank_score": p}) for h, p in ranked]
    return _json(
        SearchResults(
            knowledge_base_id=kb.id, query=body.query, mode=body.mode, data=hits[: body.top_k]
        )
    )


__all__ = ["router"]
