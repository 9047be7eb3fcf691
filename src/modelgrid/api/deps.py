"""Request-scoped dependencies: app state, request id, and the authenticated principal."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from modelgrid.api.state import AppState
from modelgrid.tenancy.service import Principal


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.modelgrid
    return state


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def started_at(request: Request) -> float:
    return float(request.scope.get("state", {}).get("started", time.perf_counter()))


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def principal(request: Request, state: Annotated[AppState, Depends(get_state)]) -> Principal:
    return await state.tenancy.authenticate(bearer_token(request))


async def admin(request: Request, state: Annotated[AppState, Depends(get_state)]) -> Principal:
    return await state.tenancy.authenticate_admin(bearer_token(request))


StateDep = Annotated[AppState, Depends(get_state)]
PrincipalDep = Annotated[Principal, Depends(principal)]
AdminDep = Annotated[Principal, Depends(admin)]
RequestIdDep = Annotated[str, Depends(request_id)]
StartedDep = Annotated[float, Depends(started_at)]

__all__ = ["AdminDep", "PrincipalDep", "RequestIdDep", "StartedDep", "StateDep", "bearer_token"]
