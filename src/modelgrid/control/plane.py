"""``ControlPlane``: the one place the admin API, the CLI and the console change things.

One object per area — ``workspaces``, ``keys``, ``prices``, ``topology``, ``files`` — sharing the
database, the topology store, the inventory they check names against and the hooks they call
after a change. A composition root builds it: the gateway over its live grid (``app.py``),
the CLI over the topology file (``cli.common``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from modelgrid.config import BatchSettings
from modelgrid.control.apps import Apps
from modelgrid.control.batches import Batches
from modelgrid.control.files import Files
from modelgrid.control.hooks import Hooks
from modelgrid.control.inventory import Inventory
from modelgrid.control.keys import Keys
from modelgrid.control.memories import MemoryAdmin
from modelgrid.control.prices import Prices
from modelgrid.control.topology import TopologyAdmin, TopologyStore
from modelgrid.control.workspaces import Workspaces
from modelgrid.serving.plugin_addresses import Network
from modelgrid.storage.filestore import FileStore
from modelgrid.storage.sealing import Sealer
from modelgrid.tenancy.lookup import Sessions


class ControlPlane:
    """The control plane of one process.

    Args:
        sessions: The database.
        topology: Where the topology lives (``LiveTopology`` or ``FileTopology``).
        served_models: Models served besides the topology's deployments (e.g. the gateway's
            embedding models); read on each check.
        embedding_models: The served models that only embed (an app's model must generate
            text); read on each check.
        hooks: Told after each change.
        files: Where files' bytes are kept (``<data_dir>/files``); ``None`` in a process that
            keeps none (``files``' operations on bytes then answer 503).
        batch: Files' quota, lifetimes and input limits (``settings.batch``).
        plugin_allowed_networks: ``apps.plugin_allowed_networks`` (apps' plugin URLs).
        sealer: Seals the secrets stored with apps (``storage.sealing``).
    """

    def __init__(
        self,
        sessions: Sessions,
        topology: TopologyStore,
        *,
        served_models: Callable[[], Iterable[str]] = lambda: (),
        embedding_models: Callable[[], Iterable[str]] = lambda: (),
        hooks: Hooks | None = None,
        files: FileStore | None = None,
        batch: BatchSettings | None = None,
        plugin_allowed_networks: Sequence[Network] = (),
        sealer: Sealer,
    ) -> None:
        hooks = hooks or Hooks()
        self._store = topology
        self._served = served_models
        self.workspaces = Workspaces(sessions, self.inventory, hooks)
        self.keys = Keys(sessions, self.inventory, hooks, self.workspaces)
        self.prices = Prices(sessions, self.inventory, hooks)
        self.topology = TopologyAdmin(sessions, topology)
        self.files = Files(sessions, self.inventory, files, batch or BatchSettings())
        self.batches = Batches(sessions, self.files, self.inventory, hooks)
        self.apps = Apps(
            sessions, self.inventory, sealer, embedding_models, plugin_allowed_networks
        )
        self.memories = MemoryAdmin(sessions)

    def inventory(self) -> Inventory:
        """What exists now: the topology's regions and jurisdictions, the served models."""
        return Inventory.of(self._store.current(), self._served())


__all__ = ["ControlPlane"]
