"""Finding a workspace or an API key by what people call it (id, name, display prefix).

Shared by the read side (``tenancy.billing``: usage and invoices) and the control plane
(``modelgrid.control``), which changes them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from modelgrid.core.errors import InvalidRequestError, NotFoundError
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import ApiKey, Workspace
from modelgrid.tenancy import keys

Sessions = async_sessionmaker[Any]


async def find_workspace(session: AsyncSession, ident: str) -> Workspace:
    """The workspace with id or name ``ident``.

    Raises:
        NotFoundError: no such workspace (``param="workspace_id"``).
    """
    ws = await repo.get_workspace(session, ident) or await repo.get_workspace_by_name(
        session, ident
    )
    if ws is None:
        raise NotFoundError(f"No workspace '{ident}'.", param="workspace_id")
    return ws


async def find_key(session: AsyncSession, ident: str) -> ApiKey:
    """The key with id ``ident`` (or its display prefix ``mg-<id>``).

    Raises:
        InvalidRequestError: ``ident`` is a whole key (id and secret): keys are named by
            their id, and a secret has no place in a URL (nor is it echoed back).
        NotFoundError: no such key.
    """
    if "_" in ident and keys.parse_key_id(ident) is not None:
        shown = ident.split("_", 1)[0]
        raise InvalidRequestError(
            f"Name the key by its id ('{shown}'), not the whole key: a secret does not "
            "belong in a URL.",
            param="key_id",
        )
    row = await repo.get_api_key(session, ident.removeprefix(keys.KEY_PREFIX))
    if row is None:
        shown = ident.split("_", 1)[0] if "_" in ident else ident  # never echo a secret
        raise NotFoundError(f"No API key '{shown}'.", param="key_id")
    return row


__all__ = ["Sessions", "find_key", "find_workspace"]
