"""``Hooks``: what the control plane tells the process it runs in after a change.

A gateway drops its cached principals (and bumps the epoch file that every process on the
machine watches) and reloads its price book; the CLI, which caches nothing, only bumps the
epoch file so that running servers notice at once. Gateways on other machines learn of the
change from its counter in the database (``storage.control_state``, ``control.sync``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


def _nothing() -> None:
    return None


async def _nothing_async() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Hooks:
    """Callbacks run after a committed change.

    Attributes:
        principals_changed: Keys or workspaces changed (scopes, limits, revocation).
        prices_changed: The price book changed.
        batch_created: A batch was created (the gateway's runner looks for work at once).
    """

    principals_changed: Callable[[], None] = _nothing
    prices_changed: Callable[[], Awaitable[None]] = _nothing_async
    batch_created: Callable[[], None] = _nothing


__all__ = ["Hooks"]
