"""The topology held in the database, shared by every gateway (``control.topology_store =
"database"``).

One document (the topology file's TOML, ``routing.topology.dumps``) in the ``topology`` row of
``control_state``, with a version. A change reads the document, applies the edit, and writes
it back only if the version is still the one it read (optimistic: a writer that lost the race
reads again and re-applies its edit, so no gateway's change overwrites another's); the write
bumps the version and, on PostgreSQL, notifies every gateway (``storage.control_state``),
which reloads the document and makes it live (``DatabaseTopology.reload_if_changed``, called by
``control.sync.ChangeFollower``).

The first gateway to start on an empty database seeds the document from its topology file
(or the embedded default); after that the file is neither read nor written by gateways in
this mode. Each gateway adds its own in-process models as ``local`` replicas when it loads
the document (``with_local_models``), as it does with a file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from modelgrid.core.errors import ConflictError
from modelgrid.routing.grid import Grid
from modelgrid.routing.topology import Topology, TopologyError, dumps, loads, with_local_models
from modelgrid.storage import control_state
from modelgrid.tenancy.lookup import Sessions

log = logging.getLogger("modelgrid.control")

ATTEMPTS = 8
Edit = Callable[[Topology], Topology]


async def read_document(sessions: Sessions) -> tuple[int, Topology | None]:
    """(version, the stored topology or ``None`` if none is stored yet).

    Raises:
        TopologyError: the stored document is not a valid topology.
    """
    async with sessions() as session:
        version, doc = await control_state.topology_document(session)
    return version, None if doc is None else loads(doc)


async def load_or_seed(sessions: Sessions, seed: Topology) -> tuple[int, Topology]:
    """The stored topology; on an empty database, ``seed`` stored first (by whichever
    gateway starts first: the others read what it stored).

    Raises:
        TopologyError: the stored document is not a valid topology.
    """
    version, topology = await read_document(sessions)
    if topology is not None:
        return version, topology
    async with sessions() as session, session.begin():
        stored = await control_state.save_topology_document(
            session, dumps(seed), expected_version=None
        )
    if stored is not None:
        log.info("topology seeded into the database (version %d)", stored)
        return stored, seed
    version, topology = await read_document(sessions)
    assert topology is not None  # another gateway seeded it meanwhile
    return version, topology


async def _write(sessions: Sessions, base: Topology, version: int, edit: Edit) -> int | None:
    topology = edit(base)
    async with sessions() as session, session.begin():
        return await control_state.save_topology_document(
            session, dumps(topology), expected_version=version
        )


class DatabaseTopology:
    """A gateway's topology when it lives in the database: changes written there (and made
    live here at once), other gateways' changes made live by ``reload``.

    Args:
        grid: The live routing layer (built from the stored topology).
        sessions: The shared database.
        version: The version of the document the grid was built from.
        on_applied: Called after each applied topology (e.g. to sync the served models).
    """

    def __init__(
        self,
        grid: Grid,
        sessions: Sessions,
        version: int,
        on_applied: Callable[[], None] = lambda: None,
    ) -> None:
        self.grid = grid
        self.version = version
        self._sessions = sessions
        self._on_applied = on_applied
        self._bad_version: int | None = None

    def current(self) -> Topology:
        return self.grid.topology

    def local_models(self) -> Collection[str]:
        return self.grid.local.keys()

    async def change(self, edit: Edit) -> Topology:
        """Raises: whatever ``edit`` raises; ConflictError: the document kept changing under
        ``ATTEMPTS`` tries."""
        local = self.grid.local.keys()
        async with self.grid.changes:
            for _ in range(ATTEMPTS):
                version, stored = await read_document(self._sessions)
                base = self.grid.topology if stored is None else with_local_models(stored, local)
                topology = edit(base)
                async with self._sessions() as session, session.begin():
                    new = await control_state.save_topology_document(
                        session,
                        dumps(topology),
                        expected_version=None if stored is None else version,
                    )
                if new is not None:
                    await self.grid.apply(topology)
                    self.version = new
                    self._on_applied()
                    return topology
        raise ConflictError("The topology kept changing under this change; try it again.")

    async def reload_if_changed(self) -> bool:
        """Make the stored topology live if it is newer than the live one. A document that is
        not valid is logged once and ignored (the live topology stays).

        Returns:
            Whether a new topology went live.
        """
        async with self._sessions() as session:  # the version first: the document only if newer
            if await control_state.topology_version(session) <= self.version:
                return False
        async with self.grid.changes:
            async with self._sessions() as session:
                version, doc = await control_state.topology_document(session)
            if doc is None or version <= self.version:
                return False
            try:
                stored = loads(doc)
            except TopologyError as exc:
                if self._bad_version != version:
                    log.error(
                        "stored topology version %d is not valid, kept the live one: %s",
                        version,
                        exc,
                    )
                    self._bad_version = version
                return False
            self.version = version
            topology = with_local_models(stored, self.grid.local.keys())
            if topology == self.grid.topology:
                return False
            await self.grid.apply(topology)
            self._on_applied()
        log.info("topology version %d from the database is live", version)
        return True


class StoredTopology:
    """The database's topology as the CLI changes it (gateways make the change live).

    Build it with ``open`` (``current`` is synchronous, so the document is read first).

    Args:
        sessions: The database.
        topology: The stored topology (or the seed, if none is stored yet).
        version: Its version (0: none stored).
        local_models: The models the gateways run themselves (their settings).
    """

    def __init__(
        self, sessions: Sessions, topology: Topology, version: int, local_models: Collection[str]
    ) -> None:
        self._sessions = sessions
        self._topology = topology
        self._version = version
        self._stored = version > 0
        self._local = local_models

    @classmethod
    async def open(
        cls, sessions: Sessions, seed: Topology, local_models: Collection[str]
    ) -> StoredTopology:
        """Raises: TopologyError: the stored document is not a valid topology."""
        version, stored = await read_document(sessions)
        if stored is None:
            return cls(sessions, seed, 0, local_models)
        return cls(sessions, stored, version, local_models)

    def current(self) -> Topology:
        return self._topology

    def local_models(self) -> Collection[str]:
        return self._local

    async def change(self, edit: Edit) -> Topology:
        for _ in range(ATTEMPTS):
            topology = edit(self._topology)
            async with self._sessions() as session, session.begin():
                new = await control_state.save_topology_document(
                    session,
                    dumps(topology),
                    expected_version=self._version if self._stored else None,
                )
            if new is not None:
                self._topology, self._version, self._stored = topology, new, True
                return topology
            version, stored = await read_document(self._sessions)
            if stored is not None:
                self._topology, self._version, self._stored = stored, version, True
        raise ConflictError("The topology kept changing under this change; try it again.")


__all__ = ["DatabaseTopology", "StoredTopology", "load_or_seed", "read_document"]
