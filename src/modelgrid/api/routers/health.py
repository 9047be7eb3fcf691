"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from modelgrid.api.deps import StateDep

router = APIRouter()


@router.api_route("/health/live", methods=["GET", "HEAD"])
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.api_route("/health/ready", methods=["GET", "HEAD"])
async def ready(state: StateDep) -> JSONResponse:
    models = {
        c.model_id: e.ready
        for c, e in zip(state.models.cards(), state.models.engines(), strict=True)
    }
    if state.models.ready:
        return JSONResponse({"status": "ready", "models": models})
    body: dict[str, object] = {"status": "loading", "models": models}
    if state.load_error:
        body = {"status": "failed", "models": models, "error": state.load_error}
    return JSONResponse(body, status_code=503)


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
