"""An engine worker's liveness, readiness and Prometheus metrics (no token: probes need none).

``/health/ready`` names the model and region and carries the replica's load (``queue_depth``
waiting, ``running`` generating), cheap enough for a gateway to poll for load- and
prefix-aware routing (``routing.health``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from modelgrid.api.worker_state import WorkerDep

router = APIRouter()


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(state: WorkerDep) -> JSONResponse:
    card = state.engine.card
    body: dict[str, Any] = {"model": card.model_id, "region": state.region, **state.load()}
    if state.models.ready:
        return JSONResponse({"status": "ready", **body})
    if state.load_error:
        return JSONResponse({"status": "failed", "error": state.load_error, **body}, 503)
    return JSONResponse({"status": "loading", **body}, 503)


@router.get("/metrics")
async def metrics(state: WorkerDep) -> Response:
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


__all__ = ["router"]
