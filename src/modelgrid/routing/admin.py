"""Topology administration: the admin API's operations on regions and deployments.

Each change builds a new validated ``Topology`` from the current one, makes it live
(``Grid.apply``: new upstream replicas started, removed ones closed) and writes it to the
topology file, so it survives a restart. Requests already running keep their replica.
Listings add what this gateway sees live: breaker state, requests in flight, probe RTT.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

from modelgrid.core.errors import ConflictError, InvalidRequestError, NotFoundError
from modelgrid.protocol.topology import (
    DeploymentObject,
    DeploymentSpec,
    RegionCreate,
    RegionObject,
    RegionPatch,
    ReplicaObject,
    ReplicaState,
)
from modelgrid.routing.grid import Grid
from modelgrid.routing.topology import (
    Deployment,
    Region,
    Replica,
    Topology,
    TopologyError,
    parse_latency,
    save,
)


def _build(make: object) -> Topology:
    """Run a topology change (a ``TopologyError`` is the client's 400)."""
    return make()  # type: ignore[operator,no-any-return]


async def change(grid: Grid, edit: Callable[[Topology], Topology], path: Path | None) -> Topology:
    """Apply ``edit`` to the current topology, make the result live, and persist it to
    ``path`` (if given); changes are serialized, so none is lost to a concurrent one.

    Raises:
        whatever ``edit`` raises (nothing changes then).
    """
    async with grid.changes:
        topology = edit(grid.topology)
        await grid.apply(topology)
        if path is not None:
            await asyncio.to_thread(save, topology, path)
        return topology


# --- regions ---------------------------------------------------------------------------------


def _with_latency(t: Topology, region: str, latency: dict[str, float]) -> Topology:
    table = dict(t.latency_ms)
    table.update(parse_latency({region: latency}))
    return replace(t, latency_ms=table)


def add_region(t: Topology, body: RegionCreate) -> Topology:
    """Raises: ConflictError (exists), InvalidRequestError (bad latency peer)."""
    if t.region(body.id) is not None:
        raise ConflictError(f"Region '{body.id}' exists.", param="id")
    region = Region(body.id, body.name, body.jurisdiction, body.lat, body.lon, body.enabled)
    return _build(lambda: _with_latency(t.with_region(region), body.id, body.latency_ms))


def patch_region(t: Topology, region_id: str, body: RegionPatch) -> Topology:
    """Raises: NotFoundError, InvalidRequestError."""
    region = find_region(t, region_id)
    fields = body.model_dump(exclude_unset=True, exclude={"latency_ms"})
    for name in ("name", "jurisdiction", "enabled"):
        if name in fields and fields[name] is None:
            raise InvalidRequestError(f"{name} cannot be null.", param=name)
    changed = replace(region, **fields)
    latency = body.latency_ms or {}
    return _build(lambda: _with_latency(t.with_region(changed), region_id, latency))


def remove_region(t: Topology, region_id: str) -> Topology:
    """Raises: NotFoundError, ConflictError (it has deployments, or is the
    gateway's own region)."""
    find_region(t, region_id)
    if region_id == t.gateway_region:
        raise ConflictError(f"Region '{region_id}' is this gateway's own region.")
    try:
        return t.without_region(region_id)
    except TopologyError:
        raise ConflictError(
            f"Region '{region_id}' still has deployments; delete them first."
        ) from None


def find_region(t: Topology, region_id: str) -> Region:
    region = t.region(region_id)
    if region is None:
        raise NotFoundError(f"No region '{region_id}'.", param="region_id")
    return region


def region_object(grid: Grid, region: Region) -> RegionObject:
    t = grid.topology
    deployments = [d for d in t.deployments if d.region == region.id]
    snaps = [grid.router.snapshot(d, r) for d in deployments for r in d.replicas]
    return RegionObject(
        id=region.id,
        name=region.name,
        jurisdiction=region.jurisdiction,
        lat=region.lat,
        lon=region.lon,
        enabled=region.enabled,
        gateway=region.id == t.gateway_region,
        latency_ms=grid.router.region_latency_ms(region.id),
        models=[d.model for d in deployments],
        replicas=len(snaps),
        replicas_available=sum(s.available for s in snaps),
    )


def region_objects(grid: Grid) -> list[RegionObject]:
    return [region_object(grid, r) for r in grid.topology.regions]


# --- deployments -----------------------------------------------------------------------------


def put_deployment(
    t: Topology, body: DeploymentSpec, local_models: Collection[str] | None = None
) -> Topology:
    """Create or replace the deployment of ``body.model`` in ``body.region``.

    Args:
        local_models: The models this gateway runs in-process (``None``: not checked); a
            ``local`` replica of any other model could never answer.

    Raises:
        InvalidRequestError: unknown region, duplicate replica ids, an upstream without
            ``base_url``, a second ``local`` replica of the model, a ``local`` replica of a
            model the gateway does not run.
    """
    if (
        local_models is not None
        and body.model not in local_models
        and any(r.kind == "local" for r in body.replicas)
    ):
        raise InvalidRequestError(
            f"This gateway runs no in-process model '{body.model}', so a 'local' replica of it "
            f"could never answer; in-process models: {sorted(local_models)}. Use an upstream "
            "replica (base_url) instead.",
            param="replicas",
            code="invalid_topology",
        )
    replicas = tuple(
        Replica(
            id=r.id or "",
            kind=r.kind,
            base_url=r.base_url,
            upstream_model=r.upstream_model,
            health_url=r.health_url,
            max_concurrency=r.max_concurrency,
        )
        for r in body.replicas
    )
    return _build(lambda: t.with_deployment(Deployment(body.model, body.region, replicas)))


def remove_deployment(t: Topology, region: str, model: str) -> Topology:
    """Raises: NotFoundError."""
    find_deployment(t, region, model)
    return t.without_deployment(model, region)


def find_deployment(t: Topology, region: str, model: str) -> Deployment:
    d = t.deployment(model, region)
    if d is None:
        raise NotFoundError(f"No deployment of '{model}' in '{region}'.", param="model")
    return d


def deployment_object(grid: Grid, d: Deployment) -> DeploymentObject:
    replicas = []
    for r in d.replicas:
        h = grid.router.health.of(r.id)
        engine = grid.engine_for(r.id)
        replicas.append(
            ReplicaObject(
                id=r.id,
                kind=r.kind,
                base_url=r.base_url,
                upstream_model=r.upstream_model,
                health_url=r.health_url,
                max_concurrency=r.max_concurrency,
                state=ReplicaState(
                    ready=engine is not None and engine.ready,
                    breaker=h.breaker.state.value,
                    in_flight=h.in_flight,
                    rtt_ms=None if h.rtt_ms is None else round(h.rtt_ms, 3),
                    last_probe_ok=h.last_probe_ok,
                    last_error=h.last_error,
                    served=h.served,
                    failed=h.failed,
                    probe_failures=h.probe_failures,
                ),
            )
        )
    return DeploymentObject(model=d.model, region=d.region, replicas=replicas)


def deployment_objects(grid: Grid, model: str | None = None) -> list[DeploymentObject]:
    return [
        deployment_object(grid, d)
        for d in grid.topology.deployments
        if model is None or d.model == model
    ]


__all__ = [
    "add_region",
    "change",
    "deployment_object",
    "deployment_objects",
    "find_deployment",
    "find_region",
    "patch_region",
    "put_deployment",
    "region_object",
    "region_objects",
    "remove_deployment",
    "remove_region",
]
