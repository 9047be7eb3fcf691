"""OpenAI embeddings: ``POST /v1/embeddings`` (always a plain JSON response)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from modelgrid.api.body import json_body
from modelgrid.api.deps import CallDep
from modelgrid.protocol.openai.embeddings import EmbeddingRequest

router = APIRouter(prefix="/v1")


@router.post("/embeddings")
async def embeddings(request: Request, call: CallDep) -> JSONResponse:
    body = await json_body(request, EmbeddingRequest)
    # A JSONResponse directly: FastAPI's jsonable_encoder would walk every float in Python.
    return JSONResponse(await call.state.embeddings.create(call.principal, body, call.ctx))
