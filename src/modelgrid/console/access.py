"""Who is signed in to the console and what they may see (``Viewer``), and how a key's
access is decided (``access_of``).

There is no separate user directory: people sign in with an API key, and the key decides:

- ``operator``: an admin key (role ``admin``). Sees and changes everything.
- ``member``: a workspace member — a tenant key whose scopes are not narrowed (no
  ``allowed_models``, ``allowed_regions`` or ``allowed_jurisdictions`` of its own: it may do
  everything its workspace may). Sees its whole workspace: every key of it (and creates,
  rotates and revokes them), the workspace's limits (read-only), its audit entries, usage.
- ``key``: any other tenant key, a delegated credential. Sees only that key: its own row on
  the keys page and its own usage.

Another workspace's object is a 404 to a tenant (never a 403: its existence is not told).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelgrid.core.errors import NotFoundError
from modelgrid.storage.models import ApiKey
from modelgrid.tenancy.service import Principal

Access = Literal["operator", "member", "key"]
EVERYONE: frozenset[Access] = frozenset({"operator", "member", "key"})
MEMBERS: frozenset[Access] = frozenset({"operator", "member"})
OPERATORS: frozenset[Access] = frozenset({"operator"})


def access_of(row: ApiKey) -> Access:
    """The console access a key gives (see the module's docstring)."""
    if row.role == "admin":
        return "operator"
    narrowed = (row.allowed_models, row.allowed_regions, row.allowed_jurisdictions)
    return "member" if all(v is None for v in narrowed) else "key"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in person of one console request.

    Attributes:
        principal: The key's principal as the model API sees it (through the principal
            cache, re-checked on every page load).
        access: ``operator``, ``member`` or ``key``.
        key_prefix: The key's display prefix (``mg-<id>``): what the header shows.
        csrf_token: This session's CSRF token (hex), to send with every POST.
    """

    principal: Principal
    access: Access
    key_prefix: str
    csrf_token: str

    @property
    def key_id(self) -> str:
        return self.principal.key_id

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    @property
    def is_operator(self) -> bool:
        return self.access == "operator"

    def workspace_scope(self) -> str | None:
        """The workspace this viewer is confined to (``None``: an operator, every one)."""
        return None if self.is_operator else self.workspace_id

    def check_workspace(self, workspace_id: str, what: str = "workspace") -> None:
        """Raises: NotFoundError: ``workspace_id`` is not this tenant's (as if it did not
        exist)."""
        if not self.is_operator and workspace_id != self.workspace_id:
            raise NotFoundError(f"No {what} here.")

    def check_key(self, key_id: str, workspace_id: str) -> None:
        """Raises: NotFoundError: a key this viewer may not see (another workspace's; for a
        ``key`` viewer, any key but its own)."""
        self.check_workspace(workspace_id, "API key")
        if self.access == "key" and key_id != self.key_id:
            raise NotFoundError("No API key here.")


__all__ = ["EVERYONE", "MEMBERS", "OPERATORS", "Access", "Viewer", "access_of"]
