"""Knowledge bases: the workspace's knowledge bases and OpenAI vector stores (knowledge bases
of kind ``vector_store``), read-only — name, kind, region, embedding model, documents per
status, a vector store's status and file counts (``control.knowledge``,
``control.vector_stores``).

A workspace member and a key holder see their workspace's; an operator picks a workspace
(default: its own key's). SQL: the knowledge bases and their document counts, the vector
stores with theirs (a handful), plus the workspace list of an operator.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from starlette.responses import Response

from modelgrid.console.access import EVERYONE
from modelgrid.console.deps import StateDep, ViewerDep, page_router
from modelgrid.console.templating import render

router = page_router(EVERYONE, prefix="/knowledge")
LIMIT = 100


@router.get("")
async def knowledge_page(
    request: Request,
    state: StateDep,
    viewer: ViewerDep,
    workspace: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    workspace_id = (workspace or viewer.workspace_id) if viewer.is_operator else viewer.workspace_id
    knowledge = state.app.knowledge
    bases: list[Any] = []
    stores: list[dict[str, Any]] = []
    if knowledge is not None:
        bases = (await knowledge.bases.list(workspace_id, limit=LIMIT)).data
        stores = (await knowledge.stores.list(workspace_id, limit=LIMIT))["data"]
    store_ids = {s["id"] for s in stores}
    workspaces = await state.control.workspaces.list() if viewer.is_operator else []
    return render(
        request,
        "knowledge.html",
        viewer,
        page="knowledge",
        title="Knowledge bases",
        available=knowledge is not None,
        bases=[b for b in bases if b.id not in store_ids],
        stores=stores,
        workspace_id=workspace_id,
        workspaces=workspaces,
    )


__all__ = ["router"]
