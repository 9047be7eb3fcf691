"""Regions: the live topology as this gateway sees it — each region on a small SVG map
(``console.charts.region_map``, no map tiles), each deployment's replicas with their
readiness, load (in flight / max), breaker state, probe round trip and counts
(``control.topology``'s objects over ``routing.Grid`` and its health book) — and which
regions each workspace may run in (its allowed regions and jurisdictions, decided by the
routing layer's own rule, ``RoutingHints.allows``).

Operators and workspace members (a member sees its own workspace's residency only). SQL: the
workspace list (an operator) or the workspace (a member); the topology is in memory.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from modelgrid.console import charts
from modelgrid.console.access import MEMBERS
from modelgrid.console.deps import StateDep, ViewerDep, page_router
from modelgrid.console.templating import render
from modelgrid.control import topology as ops
from modelgrid.core.types import RoutingHints
from modelgrid.protocol.admin import WorkspaceObject
from modelgrid.protocol.topology import RegionObject

router = page_router(MEMBERS, prefix="/regions")


def residency(ws: WorkspaceObject, regions: list[RegionObject]) -> list[str]:
    """The ids of ``regions`` a request of workspace ``ws`` may run in."""
    hints = RoutingHints(
        allowed_regions=None if ws.allowed_regions is None else frozenset(ws.allowed_regions),
        allowed_jurisdictions=(
            None if ws.allowed_jurisdictions is None else frozenset(ws.allowed_jurisdictions)
        ),
    )
    return [r.id for r in regions if hints.allows(r.id, r.jurisdiction)]


@router.get("")
async def regions_page(request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    grid = state.app.grid
    regions = ops.region_objects(grid) if grid is not None else []
    deployments = ops.deployment_objects(grid) if grid is not None else []
    if viewer.is_operator:
        workspaces = await state.control.workspaces.list()
    else:
        workspaces = [await state.control.workspaces.get(viewer.workspace_id)]
    dots = [
        charts.MapRegion(r.id, r.lat, r.lon, r.replicas_available, r.replicas, r.enabled)
        for r in regions
    ]
    return render(
        request,
        "regions.html",
        viewer,
        page="regions",
        title="Regions",
        started=grid is not None,
        regions=regions,
        deployments=deployments,
        map_svg=charts.region_map(dots),
        health={d.id: d.health for d in dots},
        workspaces=workspaces,
        residency={w.id: residency(w, regions) for w in workspaces},
    )


__all__ = ["residency", "router"]
