"""The topology admin API: ``/admin/v1/regions`` and ``/admin/v1/deployments``.

Admin keys only (``AdminDep``). Changes go live at once (new upstream replicas are started and
probed, served models appear or go), are written to the topology file, and are audited with
the admin key as actor. The operations live in ``routing.admin``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from modelgrid.api.deps import AdminDep, StateDep
from modelgrid.api.state import AppState
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
from modelgrid.routing import admin as ops
from modelgrid.routing.topology import Topology
from modelgrid.tenancy import audit
from modelgrid.tenancy.service import Principal

router = APIRouter(prefix="/admin/v1", tags=["admin"])


def _grid(state: AppState) -> Grid:
    if state.grid is None:
        raise ServiceUnavailableError("Routing is not started yet.")
    return state.grid


async def _change(
    state: AppState,
    admin: Principal,
    edit: Callable[[Topology], Topology],
    action: str,
    target: str,
    details: dict[str, Any],
) -> Topology:
    """Apply, persist and audit one change; the served models follow the topology."""
    grid = _grid(state)
    topology = await ops.change(grid, edit, state.settings.topology_path)
    state.models.sync_routed(grid.engines())
    async with state.sessions() as session, session.begin():
        await audit.record(
            session,
            actor=audit.api_actor(admin.key_id),
            action=action,
            target=target,
            details=details,
        )
    return topology


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
    t = await _change(
        state,
        admin,
        lambda t: ops.add_region(t, body),
        "region.create",
        f"region:{body.id}",
        body.model_dump(mode="json"),
    )
    return ops.region_object(_grid(state), ops.find_region(t, body.id))


@router.patch("/regions/{region_id}")
async def update_region(
    region_id: str, body: RegionPatch, state: StateDep, admin: AdminDep
) -> RegionObject:
    t = await _change(
        state,
        admin,
        lambda t: ops.patch_region(t, region_id, body),
        "region.update",
        f"region:{region_id}",
        body.model_dump(mode="json", exclude_unset=True),
    )
    return ops.region_object(_grid(state), ops.find_region(t, region_id))


@router.delete("/regions/{region_id}", status_code=204)
async def delete_region(region_id: str, state: StateDep, admin: AdminDep) -> Response:
    await _change(
        state,
        admin,
        lambda t: ops.remove_region(t, region_id),
        "region.delete",
        f"region:{region_id}",
        {},
    )
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
    t = await _change(
        state,
        admin,
        lambda t: ops.put_deployment(t, body, _grid(state).local.keys()),
        "deployment.put",
        f"deployment:{body.region}/{body.model}",
        body.model_dump(mode="json"),
    )
    return ops.deployment_object(_grid(state), ops.find_deployment(t, body.region, body.model))


@router.delete("/deployments/{region}/{model:path}", status_code=204)
async def delete_deployment(region: str, model: str, state: StateDep, admin: AdminDep) -> Response:
    await _change(
        state,
        admin,
        lambda t: ops.remove_deployment(t, region, model),
        "deployment.delete",
        f"deployment:{region}/{model}",
        {},
    )
    return Response(status_code=204)
