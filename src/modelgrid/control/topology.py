"""Topology administration: regions and deployments (the admin API, the CLI and the console
call this).

Each change builds a new validated ``Topology`` from the current one (``routing.topology``
checks it whole: ids, known regions, latency peers, and residency — a ``local`` replica runs
in the gateway's region, so only a deployment there may have one) and hands it to a
``TopologyStore``:

- ``LiveTopology`` (a gateway): makes it live (``Grid.apply``: new upstream replicas started,
  removed ones closed; requests already running keep their replica) and writes it to the
  topology file, so it survives a restart. It also follows the file: a change written there
  by the CLI (or by hand) is loaded within ``RELOAD_INTERVAL_S``.
- ``FileTopology`` (the CLI): writes the file, which running gateways then load.

Writers of one file take its lock (``<file>.lock``), so none loses another's change. The
audit entry is written in the transaction that encloses the change: a change that fails
leaves none. A region that workspaces still name (home or allowed) cannot be removed.
Listings add what a gateway sees live: breaker state, requests in flight, probe RTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

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
    Topology,
    TopologyError,
    deployment_of,
    load,
    parse_latency,
    region_of,
    save,
    with_local_models,
)
from modelgrid.storage import repositories as repo
from modelgrid.tenancy import audit
from modelgrid.tenancy.lookup import Sessions

log = logging.getLogger("modelgrid.control")

RELOAD_INTERVAL_S = 1.0
Edit = Callable[[Topology], Topology]


def _build(make: object) -> Topology:
    """Run a topology change (a ``TopologyError`` is the client's 400)."""
    return make()  # type: ignore[operator,no-any-return]


# --- regions ---------------------------------------------------------------------------------


def _with_latency(t: Topology, region: str, latency: dict[str, float]) -> Topology:
    table = dict(t.latency_ms)
    table.update(parse_latency({region: latency}))
    return replace(t, latency_ms=table)


def add_region(t: Topology, body: RegionCreate) -> Topology:
    """Raises: ConflictError (exists), InvalidRequestError (bad latency peer)."""
    if t.region(body.id) is not None:
        raise ConflictError(f"Region '{body.id}' exists.", param="id")
    region = region_of(body)
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
    return _build(lambda: t.with_deployment(deployment_of(body)))


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
                attempts=r.attempts,
                prefix_header=r.prefix_header,
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


# --- stores ----------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` exclusively (writers of one topology file on one machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f"{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


class TopologyStore(Protocol):
    """Where the topology lives for the process that changes it."""

    def current(self) -> Topology:
        """The topology as it is now."""
        ...

    def local_models(self) -> Collection[str] | None:
        """The models a ``local`` replica can run (the gateway's own engines); ``None``:
        not known here."""
        ...

    async def change(self, edit: Edit) -> Topology:
        """Apply ``edit`` to the current topology and keep the result (serialized: no
        change is lost to a concurrent one). Raises whatever ``edit`` raises, with nothing
        changed."""
        ...


class LiveTopology:
    """A gateway's topology: the grid's, written to ``path`` on each change and reloaded
    from it when another writer changed it.

    Args:
        grid: The live routing layer.
        path: The topology file (``None``: changes are not persisted nor followed).
        on_applied: Called after each applied topology (e.g. to sync the served models).
    """

    def __init__(
        self, grid: Grid, path: Path | None, on_applied: Callable[[], None] = lambda: None
    ) -> None:
        self.grid = grid
        self.path = path
        self._on_applied = on_applied
        self._seen = _signature(path) if path is not None else None
        self._bad: tuple[int, int] | None = None

    def current(self) -> Topology:
        return self.grid.topology

    def local_models(self) -> Collection[str]:
        return self.grid.local.keys()

    async def change(self, edit: Edit) -> Topology:
        async with self.grid.changes:
            topology = edit(self.grid.topology)
            await self.grid.apply(topology)
            if self.path is not None:
                await asyncio.to_thread(self._save, topology, self.path)
            self._on_applied()
            return topology

    def _save(self, topology: Topology, path: Path) -> None:
        with file_lock(path):
            save(topology, path)
            self._seen = _signature(path)

    async def reload_if_changed(self) -> bool:
        """Load the file if another writer changed it since this process last read or wrote
        it, and make it live (the gateway's own models added, as at start-up). A bad file
        is logged once and ignored: the live topology stays.

        Returns:
            Whether a new topology went live.
        """
        path = self.path
        if path is None or (sig := _signature(path)) == self._seen or sig is None:
            return False
        async with self.grid.changes:
            try:
                loaded = await asyncio.to_thread(load, path)
            except (OSError, TopologyError) as exc:
                if sig != self._bad:
                    log.error(
                        "topology file %s changed but is not valid, kept the live one: %s",
                        path,
                        exc,
                    )
                    self._bad = sig
                return False
            self._seen = sig
            topology = with_local_models(loaded, self.grid.local.keys())
            if topology == self.grid.topology:
                return False
            await self.grid.apply(topology)
            self._on_applied()
        log.info("topology reloaded from %s", path)
        return True


class FileTopology:
    """The topology file as the CLI changes it (running gateways follow the file).

    Args:
        path: The topology file.
        base: The topology to start from when the file does not exist yet (the embedded
            default with the configured models).
        local_models: The models the gateway runs itself (its settings).
    """

    def __init__(self, path: Path, base: Topology, local_models: Collection[str]) -> None:
        self.path = path
        self._base = base
        self._local = local_models

    def current(self) -> Topology:
        """Raises: TopologyError: an invalid or unreadable file (its message names it)."""
        if not self.path.exists():
            return self._base
        try:
            return load(self.path)
        except (OSError, TopologyError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TopologyError(f"topology file {self.path}: {reason}") from None

    def local_models(self) -> Collection[str]:
        return self._local

    async def change(self, edit: Edit) -> Topology:
        def go() -> Topology:
            with file_lock(self.path):
                topology = edit(self.current())
                save(topology, self.path)
                return topology

        return await asyncio.to_thread(go)


# --- the admin -------------------------------------------------------------------------------


class TopologyAdmin:
    """Region and deployment administration over a ``TopologyStore``.

    Args:
        sessions: The database (audit entries, workspaces that name a region).
        store: Where the topology lives.
    """

    def __init__(self, sessions: Sessions, store: TopologyStore) -> None:
        self._sessions = sessions
        self.store = store

    def current(self) -> Topology:
        return self.store.current()

    async def _change(
        self, edit: Edit, action: str, target: str, details: dict[str, Any], actor: str
    ) -> Topology:
        async with self._sessions() as session, session.begin():
            # The change first, then its entry in the open transaction (no database lock is
            # held while replicas start); a failed change writes no entry.
            topology = await self.store.change(edit)
            await audit.record(session, actor=actor, action=action, target=target, details=details)
        return topology

    async def add_region(self, body: RegionCreate, *, actor: str) -> Region:
        """Raises: ConflictError (exists), InvalidRequestError (bad latency peer)."""
        t = await self._change(
            lambda t: add_region(t, body),
            "region.create",
            f"region:{body.id}",
            body.model_dump(mode="json"),
            actor,
        )
        return find_region(t, body.id)

    async def update_region(self, region_id: str, body: RegionPatch, *, actor: str) -> Region:
        """Raises: NotFoundError, InvalidRequestError."""
        t = await self._change(
            lambda t: patch_region(t, region_id, body),
            "region.update",
            f"region:{region_id}",
            body.model_dump(mode="json", exclude_unset=True),
            actor,
        )
        return find_region(t, region_id)

    async def remove_region(self, region_id: str, *, actor: str) -> None:
        """Raises: NotFoundError; ConflictError: it has deployments, is the gateway's own
        region, or workspaces name it."""
        find_region(self.store.current(), region_id)
        names = await self._workspaces_naming(region_id)
        if names:
            raise ConflictError(
                f"Region '{region_id}' is a home or allowed region of workspace(s) "
                f"{', '.join(sorted(names))}; change them first.",
                param="region_id",
            )
        await self._change(
            lambda t: remove_region(t, region_id),
            "region.delete",
            f"region:{region_id}",
            {},
            actor,
        )

    async def _workspaces_naming(self, region: str) -> list[str]:
        async with self._sessions() as session:
            return [
                ws.name
                for ws in await repo.list_workspaces(session)
                if ws.home_region == region or region in (ws.allowed_regions or ())
            ]

    async def put_deployment(self, body: DeploymentSpec, *, actor: str) -> Deployment:
        """Create the deployment of ``body.model`` in ``body.region``, or replace its replicas.

        Raises: InvalidRequestError (see ``put_deployment``).
        """
        local = self.store.local_models()
        t = await self._change(
            lambda t: put_deployment(t, body, local),
            "deployment.put",
            f"deployment:{body.region}/{body.model}",
            body.model_dump(mode="json"),
            actor,
        )
        return find_deployment(t, body.region, body.model)

    async def remove_deployment(self, region: str, model: str, *, actor: str) -> None:
        """Raises: NotFoundError."""
        await self._change(
            lambda t: remove_deployment(t, region, model),
            "deployment.delete",
            f"deployment:{region}/{model}",
            {},
            actor,
        )


__all__ = [
    "RELOAD_INTERVAL_S",
    "FileTopology",
    "LiveTopology",
    "TopologyAdmin",
    "TopologyStore",
    "add_region",
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
