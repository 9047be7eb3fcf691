"""Liveness, readiness and Prometheus metrics.

``/health/ready`` lists each model's readiness and, for models served by a supervised engine
process, that process's state (``engines``: state, pid, restarts, last exit, crash loop).
"""

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
    engines = {m: p.status().as_dict() for m, p in state.processes.items()}
    extra: dict[str, object] = {"engines": engines} if engines else {}
    if state.models.ready:
        return JSONResponse({"status": "ready", "models": models, **extra})
    body: dict[str, object] = {"status": "loading", "models": models, **extra}
    if state.load_error:
        body = {"status": "failed", "models": models, "error": state.load_error, **extra}
    return JSONResponse(body, status_code=503)


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
