"""An engine worker's embedding calls, ``/internal/embeddings…``: what a gateway's
``engines.process_embedding`` asks of the embedding model behind this worker (not a public
API; bodies in ``protocol.engine_rpc``; behind the worker's token).

``GET`` the model's facts, ``POST /count`` the inputs' tokens, ``/decode`` token ids to text,
``/embed`` the vectors (base64 little-endian float32, as OpenAI's ``encoding_format``).
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request

from modelgrid.api.body import json_body
from modelgrid.api.worker_state import WorkerCallerDep, WorkerState
from modelgrid.core.errors import NotFoundError, ServiceUnavailableError
from modelgrid.engines.embedding import EmbeddingEngine
from modelgrid.engines.process_embedding import INTERNAL
from modelgrid.protocol.engine_rpc import TextsIn, TokenIdsIn

router = APIRouter()


@router.get(INTERNAL)
async def facts(state: WorkerCallerDep) -> dict[str, Any]:
    """The embedding model's facts."""
    engine = _embedder(state)
    return {
        "model": engine.card.model_id,
        "dimensions": engine.dimensions,
        "max_input_tokens": engine.max_input_tokens,
    }


@router.post(f"{INTERNAL}/count")
async def count(request: Request, state: WorkerCallerDep) -> dict[str, Any]:
    body = await json_body(request, TextsIn)
    return {"counts": await _embedder(state).count_tokens(body.texts)}


@router.post(f"{INTERNAL}/decode")
async def decode(request: Request, state: WorkerCallerDep) -> dict[str, Any]:
    body = await json_body(request, TokenIdsIn)
    return {"texts": await _embedder(state).decode(body.token_ids)}


@router.post(f"{INTERNAL}/embed")
async def embed(request: Request, state: WorkerCallerDep) -> dict[str, Any]:
    body = await json_body(request, TextsIn)
    result = await _embedder(state).embed(body.texts)
    vectors = [base64.b64encode(v).decode("ascii") for v in result.vectors]
    return {"dimensions": result.dimensions, "vectors": vectors}


def _embedder(state: WorkerState) -> EmbeddingEngine:
    """The worker's embedding engine, once loaded.

    Raises:
        NotFoundError: the worker serves a generation model.
        ServiceUnavailableError: still loading.
    """
    engine = state.engine
    if not isinstance(engine, EmbeddingEngine):
        raise NotFoundError("This engine worker serves no embedding model.")
    if not state.models.ready:
        raise ServiceUnavailableError("The embedding model is still loading.")
    return engine


__all__ = ["router"]
