"""``Area``: what every control-plane service holds — the database, what exists, and the
hooks to call after a change (``control.plane`` builds one of each area over the same)."""

from __future__ import annotations

from collections.abc import Callable

from modelgrid.control.hooks import Hooks
from modelgrid.control.inventory import Inventory
from modelgrid.tenancy.lookup import Sessions


class Area:
    """Args: sessions: the database; inventory: what exists now (regions, jurisdictions,
    models); hooks: told after each change."""

    def __init__(
        self, sessions: Sessions, inventory: Callable[[], Inventory], hooks: Hooks
    ) -> None:
        self._sessions = sessions
        self._inventory = inventory
        self._hooks = hooks


__all__ = ["Area"]
