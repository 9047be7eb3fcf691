"""The topology admin API: ``/admin/v1/regions`` and ``/admin/v1/deployments``.

Admin keys only (``AdminDep``). Changes go through the control plane
(``state.control.topology``): they go live at once (new upstream replicas are started and
probed, served models appear or go), are written to the topology file, and are audited with
the admin key as actor. Listings add the live state this gateway sees (``control.topology``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from modelgrid.api.deps import AdminDep, StateDep
from modelgrid.api.state import AppState
from modelgrid.control import topology as ops
from modelgrid.core.errors import ServiceUnavailableError
from modelgrid.protocol.admin import ListObject
from modelgrid.protocol.topology import (
    DeploymentObject,
    DeploymentSpec,
    RegionCreate,
    RegionObject,
    RegionPatch,
)
from modelgrid.routing import Grid
from modelgrid.tenancy import audit

router = APIRouter(prefix="/admin/v1", tags=["admin"])


def _grid(state: AppState) -> Grid:
    if state.grid is None:
        raise ServiceUnavailableError("Routing is not started yet.")
    return state.grid


# --- regions ---------------------------------------------------------------------------------


@router.get("/regions")
async def list_regions(state: StateDep, _: AdminDep) -> ListObject:
    return ListObject(data=ops.region_objects(_grid(state)))


@router.get("/regions/{region_id}")
async def get_region(region_id: str, state: StateDep, _: AdminDep) -> RegionObject:
    grid = _grid(state)
    return ops.region_object(grid, ops.find_region(grid.topology, region_id))


@router.post("/regions")
async def create_region(body: RegionCreate, state: StateDep, admin: AdminDep) -> RegionObject:
    region = await state.control.topology.add_region(body, actor=audit.api_actor(admin.key_id))
    return ops.region_object(_grid(state), region)


@router.patch("/regions/{region_id}")
async def update_region(
    region_id: str, body: RegionPatch, state: StateDep, admin: AdminDep
) -> RegionObject:
    region = await state.control.topology.update_region(
        region_id, body, actor=audit.api_actor(admin.key_id)
    )
    return ops.region_object(_grid(state), region)


@router.delete("/regions/{region_id}", status_code=204)
async def delete_region(region_id: str, state: StateDep, admin: AdminDep) -> Response:
    await state.control.topology.remove_region(region_id, actor=audit.api_actor(admin.key_id))
    return Response(status_code=204)


# --- deployments -----------------------------------------------------------------------------


@router.get("/deployments")
async def list_deployments(state: StateDep, _: AdminDep, model: str | None = None) -> ListObject:
    return ListObject(data=ops.deployment_objects(_grid(state), model))


@router.get("/deployments/{region}/{model:path}")
async def get_deployment(region: str, model: str, state: StateDep, _: AdminDep) -> DeploymentObject:
    grid = _grid(state)
    return ops.deployment_object(grid, ops.find_deployment(grid.topology, region, model))


@router.post("/deployments")
async def put_deployment(
    body: DeploymentSpec, state: StateDep, admin: AdminDep
) -> DeploymentObject:
    """Create the deployment of ``model`` in ``region``, or replace its replicas."""
    deployment = await state.control.topology.put_deployment(
        body, actor=audit.api_actor(admin.key_id)
    )
    return ops.deployment_object(_grid(state), deployment)


@router.delete("/deployments/{region}/{model:path}", status_code=204)
async def delete_deployment(region: str, model: str, state: StateDep, admin: AdminDep) -> Response:
    await state.control.topology.remove_deployment(
        region, model, actor=audit.api_actor(admin.key_id)
    )
    return Response(status_code=204)
