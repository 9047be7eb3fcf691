"""Apps (assistants): managing them and calling them (``docs/applications.md``).

- ``/v1/apps`` (tenant keys; the key's workspace): create, list, get, change (``POST
  /v1/apps/{id}``), delete; an end user's session (``/v1/apps/{id}/sessions/{session_id}``):
  read its turns, delete it. Another workspace's id is a 404. Errors are OpenAI's object.
- ``/admin/v1/workspaces/{workspace}/apps`` (admin keys): the same for any workspace.
- ``/v1/memories/{memory_id}`` (tenant keys): an end user's long-term memory (the facts app
  calls with that ``memory_id`` stored): get, add a fact, delete one or all.
- ``POST /api/v1/apps/{app_id}/completion``: DashScope's Application API
  (``protocol.dashscope.apps``, ``serving.apps``), what ``dashscope.Application.call`` sends.
  JSON, or server-sent events in DashScope's framing (``X-DashScope-SSE: enable``), framed
  and failed as on the text-generation route: errors before the first byte are plain JSON in
  DashScope's shape, after it one ``event:error``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from modelgrid.api.body import json_body
from modelgrid.api.deps import AdminDep, CallDep, StateDep
from modelgrid.api.disconnect import unless_disconnected
from modelgrid.api.paging import Cursor, ForwardOnly
from modelgrid.api.routers.dashscope import cut_event, wants_sse
from modelgrid.api.sse import SSEResponse
from modelgrid.api.state import AppState
from modelgrid.control.apps import LIST_LIMIT_MAX
from modelgrid.core.errors import ModelgridError, ServiceUnavailableError
from modelgrid.protocol.apps import AppCreate, AppUpdate, MemoryFactCreate
from modelgrid.protocol.dashscope.apps import AppCompletionRequest
from modelgrid.protocol.dashscope.errors import INTERNAL_ERROR, error_body
from modelgrid.protocol.dashscope.sse import EventWriter
from modelgrid.serving.apps import AppRun, AppService
from modelgrid.tenancy import audit

log = logging.getLogger("modelgrid.api")
router = APIRouter(tags=["apps"])
Limit = Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)]


def _json(obj: BaseModel) -> JSONResponse:
    return JSONResponse(obj.model_dump(mode="json"))


def _service(state: AppState) -> AppService:
    if state.apps is None:
        raise ServiceUnavailableError("Apps are not available in this gateway.")
    return state.apps


# --- calling an app (DashScope's Application API) --------------------------------------------


@router.post("/api/v1/apps/{app_id}/completion")
async def completion(app_id: str, request: Request, call: CallDep) -> Response:
    body = await json_body(request, AppCompletionRequest)
    service = _service(call.state)
    streamed = wants_sse(request)
    run = await service.open(call.principal, app_id, body, call.ctx, stream=streamed)
    if not streamed:
        done = await unless_disconnected(request, service.complete(run))
        return done if isinstance(done, Response) else JSONResponse(done)
    writer = EventWriter()
    request_id = run.gen.request.request_id
    return SSEResponse(
        _sse(service, run, body.parameters.incremental_output, writer),
        cut=lambda exc: cut_event(writer, request_id, exc),
    )


async def _sse(
    service: AppService, run: AppRun, incremental: bool, writer: EventWriter
) -> AsyncIterator[bytes]:
    request_id = run.gen.request.request_id
    events = service.events(run, incremental)
    try:
        async for data in events:
            yield writer.result(data)
    except ModelgridError as exc:
        yield cut_event(writer, request_id, exc)
    except Exception:
        log.exception("app completion failed mid-stream")
        message = "The server had an error while generating."
        yield writer.error(500, error_body(request_id, INTERNAL_ERROR, message))
    finally:
        await events.aclose()


# --- managing apps: the tenant API -----------------------------------------------------------


@router.post("/v1/apps")
async def create_app(request: Request, call: CallDep) -> JSONResponse:
    body = await json_body(request, AppCreate)
    actor = audit.api_actor(call.principal.key_id)
    return _json(
        await call.state.control.apps.create(call.principal.workspace_id, body, actor=actor)
    )


@router.get("/v1/apps")
async def list_apps(
    call: CallDep, _: ForwardOnly, after: Cursor = None, limit: Limit = 100
) -> JSONResponse:
    apps = call.state.control.apps
    return _json(await apps.list(call.principal.workspace_id, after=after, limit=limit))


@router.get("/v1/apps/{app_id}")
async def get_app(app_id: str, call: CallDep) -> JSONResponse:
    return _json(await call.state.control.apps.get(call.principal.workspace_id, app_id))


@router.post("/v1/apps/{app_id}")
async def update_app(app_id: str, request: Request, call: CallDep) -> JSONResponse:
    body = await json_body(request, AppUpdate)
    actor = audit.api_actor(call.principal.key_id)
    apps = call.state.control.apps
    return _json(await apps.update(call.principal.workspace_id, app_id, body, actor=actor))


@router.delete("/v1/apps/{app_id}")
async def delete_app(app_id: str, call: CallDep) -> JSONResponse:
    actor = audit.api_actor(call.principal.key_id)
    return _json(
        await call.state.control.apps.delete(call.principal.workspace_id, app_id, actor=actor)
    )


@router.get("/v1/apps/{app_id}/sessions/{session_id}")
async def get_session(app_id: str, session_id: str, call: CallDep) -> JSONResponse:
    apps = call.state.control.apps
    return _json(await apps.session(call.principal.workspace_id, app_id, session_id))


@router.delete("/v1/apps/{app_id}/sessions/{session_id}")
async def delete_session(app_id: str, session_id: str, call: CallDep) -> JSONResponse:
    actor = audit.api_actor(call.principal.key_id)
    apps = call.state.control.apps
    gone = await apps.delete_session(call.principal.workspace_id, app_id, session_id, actor=actor)
    return _json(gone)


# --- end users' long-term memories ---------------------------------------------------------


@router.get("/v1/memories/{memory_id}")
async def get_memory(memory_id: str, call: CallDep) -> JSONResponse:
    return _json(await call.state.control.memories.get(call.principal.workspace_id, memory_id))


@router.post("/v1/memories/{memory_id}/facts")
async def add_memory_fact(memory_id: str, request: Request, call: CallDep) -> JSONResponse:
    body = await json_body(request, MemoryFactCreate)
    actor = audit.api_actor(call.principal.key_id)
    memories = call.state.control.memories
    return _json(await memories.add(call.principal.workspace_id, memory_id, body.fact, actor=actor))


@router.delete("/v1/memories/{memory_id}")
async def delete_memory(memory_id: str, call: CallDep) -> JSONResponse:
    actor = audit.api_actor(call.principal.key_id)
    memories = call.state.control.memories
    return _json(await memories.delete(call.principal.workspace_id, memory_id, actor=actor))


@router.delete("/v1/memories/{memory_id}/facts/{fact_id}")
async def delete_memory_fact(memory_id: str, fact_id: int, call: CallDep) -> JSONResponse:
    actor = audit.api_actor(call.principal.key_id)
    memories = call.state.control.memories
    gone = await memories.delete(call.principal.workspace_id, memory_id, fact_id, actor=actor)
    return _json(gone)


# --- managing apps: the admin API ------------------------------------------------------------


async def _workspace_id(state: AppState, ident: str) -> str:
    return (await state.control.workspaces.get(ident)).id


@router.post("/admin/v1/workspaces/{workspace}/apps")
async def admin_create_app(
    workspace: str, body: AppCreate, state: StateDep, admin: AdminDep
) -> JSONResponse:
    ws = await _workspace_id(state, workspace)
    actor = audit.api_actor(admin.key_id)
    return _json(await state.control.apps.create(ws, body, actor=actor))


@router.get("/admin/v1/workspaces/{workspace}/apps")
async def admin_list_apps(
    workspace: str,
    state: StateDep,
    _: AdminDep,
    __: ForwardOnly,
    after: Cursor = None,
    limit: Limit = 100,
) -> JSONResponse:
    ws = await _workspace_id(state, workspace)
    return _json(await state.control.apps.list(ws, after=after, limit=limit))


@router.get("/admin/v1/workspaces/{workspace}/apps/{app_id}")
async def admin_get_app(workspace: str, app_id: str, state: StateDep, _: AdminDep) -> JSONResponse:
    return _json(await state.control.apps.get(await _workspace_id(state, workspace), app_id))


@router.post("/admin/v1/workspaces/{workspace}/apps/{app_id}")
async def admin_update_app(
    workspace: str, app_id: str, body: AppUpdate, state: StateDep, admin: AdminDep
) -> JSONResponse:
    ws = await _workspace_id(state, workspace)
    actor = audit.api_actor(admin.key_id)
    return _json(await state.control.apps.update(ws, app_id, body, actor=actor))


@router.delete("/admin/v1/workspaces/{workspace}/apps/{app_id}")
async def admin_delete_app(
    workspace: str, app_id: str, state: StateDep, admin: AdminDep
) -> JSONResponse:
    ws = await _workspace_id(state, workspace)
    actor = audit.api_actor(admin.key_id)
    return _json(await state.control.apps.delete(ws, app_id, actor=actor))


__all__ = ["router"]
