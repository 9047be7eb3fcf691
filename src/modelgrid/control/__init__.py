"""The control plane: workspaces, keys, prices and the topology, changed in one place.

Framework-free; the admin API (``api.routers.admin``, ``api.routers.topology``), the CLI and
the console call ``ControlPlane``. Every change is validated against what exists
(``inventory``), audited, and followed by the process's ``Hooks``.
"""

from modelgrid.control.hooks import Hooks
from modelgrid.control.inventory import Inventory
from modelgrid.control.plane import ControlPlane
from modelgrid.control.topology import FileTopology, LiveTopology

__all__ = ["ControlPlane", "FileTopology", "Hooks", "Inventory", "LiveTopology"]
