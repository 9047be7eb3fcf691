"""OpenAI's Batch API: ``/v1/batches`` (https://platform.openai.com/docs/api-reference/batch).

Tenant keys; a batch is its workspace's (another's id is a 404). The operations live in
``control.batches``; the runner that answers the lines in ``jobs.batch_runner``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from modelgrid.api.body import json_body
from modelgrid.api.deps import CallDep
from modelgrid.api.paging import Cursor, ForwardOnly
from modelgrid.control.batches import MAX_PAGE
from modelgrid.protocol.openai.batches import BatchCreate

router = APIRouter(prefix="/v1")


@router.post("/batches")
async def create_batch(request: Request, call: CallDep) -> dict[str, Any]:
    body = await json_body(request, BatchCreate)
    return await call.state.batches.create(call.principal, body)


@router.get("/batches")
async def list_batches(
    call: CallDep,
    _: ForwardOnly,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
) -> dict[str, Any]:
    return await call.state.batches.list(call.principal.workspace_id, after=after, limit=limit)


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: str, call: CallDep) -> dict[str, Any]:
    return await call.state.batches.get(call.principal.workspace_id, batch_id)


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, call: CallDep) -> dict[str, Any]:
    return await call.state.batches.cancel(call.principal.workspace_id, batch_id)


__all__ = ["router"]
