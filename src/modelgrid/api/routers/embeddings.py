"""OpenAI embeddings: ``POST /v1/embeddings`` (always a plain JSON response)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from modelgrid.api.deps import ContextDep, PrincipalDep, StateDep
from modelgrid.protocol.openai.embeddings import EmbeddingRequest

router = APIRouter(prefix="/v1")


@router.post("/embeddings")
async def embeddings(
    body: EmbeddingRequest,
    state: StateDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> JSONResponse:
    # A JSONResponse directly: FastAPI's jsonable_encoder would walk every float in Python.
    return JSONResponse(await state.embeddings.create(principal, body, ctx))
