"""OpenAI's Vector Stores API: ``/v1/vector_stores`` (https://platform.openai.com/docs/api-reference/vector-stores).

Tenant keys; a vector store is a knowledge base of the key's workspace (another workspace's
id is a 404). Stores: ``control.vector_stores``; files and file batches:
``control.vector_store_files``; search: ``serving.file_search``. Errors are OpenAI's error
object; list routes take ``after``, ``before``, ``limit`` (1..100, default 20) and ``order``
(``asc`` / ``desc``, default ``desc``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from modelgrid.api.body import json_body
from modelgrid.api.deps import CallDep, TenantCall
from modelgrid.api.paging import Cursor
from modelgrid.api.state import AppState, Knowledge
from modelgrid.control.vector_stores import LIST_LIMIT_MAX
from modelgrid.core.errors import ServiceUnavailableError
from modelgrid.protocol.openai.attribute_filters import parse_filter
from modelgrid.protocol.openai.vector_stores import (
    FileBatchCreate,
    VectorStoreCreate,
    VectorStoreFileCreate,
    VectorStoreFileUpdate,
    VectorStoreSearch,
    VectorStoreUpdate,
)
from modelgrid.serving.file_search import result_object
from modelgrid.serving.knowledge import check_query
from modelgrid.serving.query_rewrite import default_chat_model, model_query
from modelgrid.tenancy import audit

router = APIRouter(prefix="/v1/vector_stores", tags=["vector_stores"])
Limit = Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)]
Order = Literal["asc", "desc"]
REWRITE_ENDPOINT = "vector_stores.rewrite"  # the query rewrite, in the usage ledger
FileStatus = Literal["in_progress", "completed", "failed", "cancelled"]


def _knowledge(state: AppState) -> Knowledge:
    if state.knowledge is None:
        raise ServiceUnavailableError(
            "Vector stores need the knowledge index, which this gateway's database has not "
            "(see docs/knowledge.md)."
        )
    return state.knowledge


@router.post("")
async def create_vector_store(request: Request, call: CallDep) -> dict[str, Any]:
    body = await json_body(request, VectorStoreCreate)
    kn = _knowledge(call.state)
    actor = audit.api_actor(call.principal.key_id)
    # every file checked before the store is made: a bad one refuses the whole request
    await kn.store_files.check_sources(call.principal.workspace_id, body.file_ids or ())
    row = await kn.stores.create(call.principal, body, actor=actor)
    for file_id in body.file_ids or ():
        await kn.store_files.add(
            call.principal, row.id, file_id, chunking_strategy=body.chunking_strategy, actor=actor
        )
    return await kn.stores.get(call.principal.workspace_id, row.id)


@router.get("")
async def list_vector_stores(
    call: CallDep,
    after: Cursor = None,
    before: Cursor = None,
    limit: Limit = 20,
    order: Order = "desc",
) -> dict[str, Any]:
    return await _knowledge(call.state).stores.list(
        call.principal.workspace_id, after=after, before=before, limit=limit, order=order
    )


@router.get("/{vs_id}")
async def get_vector_store(vs_id: str, call: CallDep) -> dict[str, Any]:
    return await _knowledge(call.state).stores.get(call.principal.workspace_id, vs_id)


@router.post("/{vs_id}")
async def update_vector_store(vs_id: str, request: Request, call: CallDep) -> dict[str, Any]:
    body = await json_body(request, VectorStoreUpdate)
    return await _knowledge(call.state).stores.update(
        call.principal.workspace_id, vs_id, body, actor=audit.api_actor(call.principal.key_id)
    )


@router.delete("/{vs_id}")
async def delete_vector_store(vs_id: str, call: CallDep) -> dict[str, Any]:
    return await _knowledge(call.state).stores.delete(
        call.principal.workspace_id, vs_id, actor=audit.api_actor(call.principal.key_id)
    )


@router.post("/{vs_id}/search")
async def search_vector_store(vs_id: str, request: Request, call: CallDep) -> dict[str, Any]:
    body = await json_body(request, VectorStoreSearch)
    queries = body.queries()
    if body.rewrite_query:  # a query the search would refuse is refused before a rewrite
        queries = await _rewritten(call, vs_id, [check_query(q) for q in queries])
    ranking = body.ranking_options
    hits = await _knowledge(call.state).file_search.search(
        call.principal,
        [vs_id],
        queries,
        max_num_results=body.max_num_results,
        filters=parse_filter(body.filters) if body.filters is not None else None,
        score_threshold=(ranking.score_threshold or 0.0) if ranking is not None else 0.0,
        ctx=call.ctx,
        param="vector_store_id",
        ranker=ranking.ranker if ranking is not None else None,
    )
    return {
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": [result_object(h) for h in hits],
        "has_more": False,
        "next_page": None,
    }


async def _rewritten(call: TenantCall[AppState], vs_id: str, queries: list[str]) -> list[str]:
    """Each query rewritten by the deployment's default chat model
    (``serving.query_rewrite``), once the store is known to be searchable (a bad id costs
    no rewrite); ``search_query`` returns them, as OpenAI's does."""
    state = call.state
    await _knowledge(state).stores.usable(call.principal, vs_id)
    model = default_chat_model(state.models, state.settings.engine.models)
    out = []
    for query in queries:
        rewritten = await model_query(
            state.chat, call.principal, model, [], query, call.ctx, endpoint=REWRITE_ENDPOINT
        )
        out.append(rewritten.query)
    return out


# --- files ----------------------------------------------------------------------------------


@router.post("/{vs_id}/files")
async def create_file(vs_id: str, request: Request, call: CallDep) -> dict[str, Any]:
    body = await json_body(request, VectorStoreFileCreate)
    return await _knowledge(call.state).store_files.add(
        call.principal,
        vs_id,
        body.file_id,
        attributes=body.attributes,
        chunking_strategy=body.chunking_strategy,
        actor=audit.api_actor(call.principal.key_id),
    )


@router.get("/{vs_id}/files")
async def list_files(
    vs_id: str,
    call: CallDep,
    after: Cursor = None,
    before: Cursor = None,
    limit: Limit = 20,
    order: Order = "desc",
    filter: FileStatus | None = None,  # OpenAI's name
) -> dict[str, Any]:
    return await _knowledge(call.state).store_files.list(
        call.principal.workspace_id,
        vs_id,
        status=filter,
        after=after,
        before=before,
        limit=limit,
        order=order,
    )


@router.get("/{vs_id}/files/{file_id}")
async def get_file(vs_id: str, file_id: str, call: CallDep) -> dict[str, Any]:
    return await _knowledge(call.state).store_files.get(call.principal.workspace_id, vs_id, file_id)


@router.post("/{vs_id}/files/{file_id}")
async def update_file(vs_id: str, file_id: str, request: Request, call: CallDep) -> dict[str, Any]:
    body = await json_body(request, VectorStoreFileUpdate)
    return await _knowledge(call.state).store_files.update(
        call.principal.workspace_id,
        vs_id,
        file_id,
        body.attributes,
        actor=audit.api_actor(call.principal.key_id),
    )


@router.delete("/{vs_id}/files/{file_id}")
async def delete_file(vs_id: str, file_id: str, call: CallDep) -> dict[str, Any]:
    return await _knowledge(call.state).store_files.delete(
        call.principal.workspace_id, vs_id, file_id, actor=audit.api_actor(call.principal.key_id)
    )


@router.get("/{vs_id}/files/{file_id}/content")
async def file_content(vs_id: str, file_id: str, call: CallDep) -> dict[str, Any]:
    return await _knowledge(call.state).store_files.content(
        call.principal.workspace_id, vs_id, file_id
    )


# --- file batches ---------------------------------------------------------------------------


@router.post("/{vs_id}/file_batches")
async def create_file_batch(vs_id: str, request: Request, call: CallDep) -> dict[str, Any]:
    body = await json_body(request, FileBatchCreate)
    return await _knowledge(call.state).store_files.create_batch(
        call.principal, vs_id, body, actor=audit.api_actor(call.principal.key_id)
    )


@router.get("/{vs_id}/file_batches/{batch_id}")
async def get_file_batch(vs_id: str, batch_id: str, call: CallDep) -> dict[str, Any]:
    return await _knowledge(call.state).store_files.get_batch(
        call.principal.workspace_id, vs_id, batch_id
    )


@router.post("/{vs_id}/file_batches/{batch_id}/cancel")
async def cancel_file_batch(vs_id: str, batch_id: str, call: CallDep) -> dict[str, Any]:
    return await _knowledge(call.state).store_files.cancel_batch(
        call.principal.workspace_id, vs_id, batch_id, actor=audit.api_actor(call.principal.key_id)
    )


@router.get("/{vs_id}/file_batches/{batch_id}/files")
async def list_batch_files(
    vs_id: str,
    batch_id: str,
    call: CallDep,
    after: Cursor = None,
    before: Cursor = None,
    limit: Limit = 20,
    order: Order = "desc",
    filter: FileStatus | None = None,  # OpenAI's name
) -> dict[str, Any]:
    files = _knowledge(call.state).store_files
    batch = await files.get_batch(call.principal.workspace_id, vs_id, batch_id)
    return await files.list(
        call.principal.workspace_id,
        vs_id,
        status=filter,
        after=after,
        before=before,
        limit=limit,
        order=order,
        batch_id=batch["id"],
    )


__all__ = ["router"]
