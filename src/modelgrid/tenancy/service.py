"""The tenancy service: authenticate callers, manage keys, record usage.

``authenticate`` looks the key up by its public id (primary key) and compares hashes in
constant time; revocation is read from the database on every call, so it takes effect
immediately in every process that shares the database.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from modelgrid.core.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import ApiKey
from modelgrid.tenancy import keys
from modelgrid.tenancy.metering import UsageEvent, UsageWriter

DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    key_id: str
    workspace_id: str
    role: str
    name: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key; ``plaintext`` exists only here and is never stored."""

    key_id: str
    prefix: str
    name: str
    role: str
    workspace_id: str
    plaintext: str


class TenancyService:
    def __init__(self, sessions: async_sessionmaker[Any], usage: UsageWriter | None = None) -> None:
        self._sessions = sessions
        self.usage = usage

    async def authenticate(self, plaintext: str | None) -> Principal:
        """The principal behind a bearer key.

        Raises:
            AuthenticationError: missing, malformed, unknown or revoked key.
        """
        if not plaintext:
            raise AuthenticationError(
                "You didn't provide an API key. Provide it in the Authorization header "
                "('Authorization: Bearer mg-...').",
                code="missing_api_key",
            )
        key_id = keys.parse_key_id(plaintext)
        row: ApiKey | None = None
        if key_id is not None:
            async with self._sessions() as session:
                row = await repo.get_api_key(session, key_id)
        # Compare even when the id is unknown so both paths cost the same.
        stored = row.secret_hash if row is not None else "0" * 64
        if not keys.matches(plaintext, stored) or row is None:
            raise AuthenticationError("Incorrect API key provided.")
        if row.revoked_at is not None:
            raise AuthenticationError("This API key has been revoked.", code="revoked_api_key")
        return Principal(key_id=row.id, workspace_id=row.workspace_id, role=row.role, name=row.name)

    async def authenticate_admin(self, plaintext: str | None) -> Principal:
        """Like ``authenticate`` but requires the admin role.

        Raises:
            AuthenticationError: as ``authenticate``.
            PermissionDeniedError: a tenant key.
        """
        principal = await self.authenticate(plaintext)
        if not principal.is_admin:
            raise PermissionDeniedError("This endpoint needs an admin key.")
        return principal

    async def _workspace_id(self, session: Any, name: str) -> str:
        ws = await repo.get_workspace_by_name(session, name)
        if ws is None:
            ws = await repo.add_workspace(session, f"ws_{secrets.token_hex(8)}", name)
        return ws.id

    async def create_key(
        self, *, name: str = "", role: str = "tenant", workspace: str = DEFAULT_WORKSPACE
    ) -> CreatedKey:
        """Create a key in ``workspace`` (created if missing); the plaintext is returned once."""
        if role not in ("tenant", "admin"):
            raise ValueError(f"unknown role {role!r}")
        new = keys.generate_key()
        async with self._sessions() as session, session.begin():
            ws_id = await self._workspace_id(session, workspace)
            await repo.add_api_key(
                session,
                ApiKey(
                    id=new.key_id,
                    workspace_id=ws_id,
                    name=name,
                    role=role,
                    prefix=new.prefix,
                    secret_hash=new.secret_hash,
                    created_at=datetime.now(UTC),
                ),
            )
        return CreatedKey(new.key_id, new.prefix, name, role, ws_id, new.plaintext)

    async def revoke_key(self, key_id: str) -> None:
        """Revoke by id or display prefix.

        Raises:
            NotFoundError: no active key matches.
        """
        ident = key_id.removeprefix(keys.KEY_PREFIX)
        async with self._sessions() as session, session.begin():
            if not await repo.revoke_api_key(session, ident):
                raise NotFoundError(f"No active API key '{key_id}'.", param="key_id")

    async def list_keys(self, include_revoked: bool = False) -> list[ApiKey]:
        async with self._sessions() as session:
            return list(await repo.list_api_keys(session, include_revoked=include_revoked))

    async def bootstrap(self) -> tuple[CreatedKey, CreatedKey] | None:
        """First start: create an admin key and a first tenant key, or None if any admin exists."""
        async with self._sessions() as session:
            if await repo.count_api_keys(session, "admin"):
                return None
        admin = await self.create_key(name="admin", role="admin", workspace="admin")
        first = await self.create_key(name="first-key")
        return admin, first

    def record(self, event: UsageEvent) -> None:
        """Queue one usage record (never blocks the request)."""
        if self.usage is not None:
            self.usage.record(event)


__all__ = ["DEFAULT_WORKSPACE", "CreatedKey", "Principal", "TenancyService"]
