"""The audit log: who changed what, when, for every admin change (API and CLI alike).

An entry is written in the same transaction as the change it describes, so there is never a
change without its entry nor an entry for a change that rolled back. ``actor`` is the admin
key's display prefix (``mg-<id>``) for the API and ``cli:<os user>`` for the CLI. ``details``
hold the values set (for updates: ``{"field": {"from": old, "to": new}}``) and never a key's
plaintext or hash: ``record`` refuses details that mention either.

Actions: ``workspace.create``, ``workspace.update``, ``key.create``, ``key.update``,
``key.revoke``, ``key.rotate``, ``price.create``, ``console.sign_in``, ``console.sign_out``
(and those of files, batches, knowledge bases, apps and memories). Each entry also names the
workspace it concerns (``workspace_of``), so a tenant's console lists only its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.admin import INT64_MAX, AuditObject
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import AuditEntry
from modelgrid.tenancy.keys import KEY_PREFIX, parse_key_id

FORBIDDEN_DETAIL_KEYS = frozenset({"key", "plaintext", "secret", "secret_hash"})
ACTOR_MAX = 64


def api_actor(key_id: str) -> str:
    """The actor of a change made through the admin API with key ``key_id``."""
    return f"{KEY_PREFIX}{key_id}"


def cli_actor(user: str) -> str:
    """The actor of a change made from the CLI by OS user ``user``."""
    return f"cli:{user}"[:ACTOR_MAX]


def aware(dt: datetime) -> datetime:
    """A UTC-aware datetime (SQLite hands back naive ones; everything is stored in UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return aware(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _check_no_secrets(value: Any, name: str = "details") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in FORBIDDEN_DETAIL_KEYS:
                raise ValueError(f"audit details must not carry {k!r}")
            _check_no_secrets(v, k)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_no_secrets(v, name)
    elif isinstance(value, str) and parse_key_id(value) is not None:
        raise ValueError(f"audit details must not carry a key ({name!r})")


def workspace_of(target: str, details: dict[str, Any] | None) -> str | None:
    """The workspace an entry concerns: its details' ``workspace_id``, else the target's id
    when the target is a workspace (``workspace:<id>``); ``None`` for neither (a price)."""
    ws = (details or {}).get("workspace_id")
    if isinstance(ws, str):
        return ws
    kind, _, ident = target.partition(":")
    return ident if kind == "workspace" and ident else None


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an entry inside the caller's transaction.

    Raises:
        ValueError: ``details`` name a secret (a programming error, never a client's).
    """
    if details:
        _check_no_secrets(details)
    entry = AuditEntry(
        at=datetime.now(UTC),
        actor=actor[:ACTOR_MAX],
        action=action,
        target=target,
        details=_json_safe(details) if details else None,
        workspace_id=workspace_of(target, details),
    )
    return await repo.add_audit(session, entry)


def to_object(entry: AuditEntry) -> AuditObject:
    return AuditObject(
        id=entry.id,
        at=aware(entry.at),
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        details=entry.details,
    )


def _not_an_id() -> InvalidRequestError:
    return InvalidRequestError(
        f"'before' must be an audit entry id, 1 to {INT64_MAX}.", param="before"
    )


def entry_id(text: str) -> int:
    """The audit entry id written as ``text`` (a ``before`` cursor: decimal digits).

    Raises:
        InvalidRequestError: ``text`` is no whole number (``param`` ``before``).
    """
    if not (text.isascii() and text.isdigit()):
        raise _not_an_id()
    return int(text)


async def list_entries(
    sessions: async_sessionmaker[Any],
    *,
    limit: int = 100,
    before: int | None = None,
    action: str | None = None,
    target: str | None = None,
    workspace_id: str | None = None,
) -> tuple[list[AuditObject], bool]:
    """Entries newest first (of one workspace, when given) and whether more (older) ones
    exist; ``before`` is an entry id (keyset pagination). One SQL statement.

    Raises:
        InvalidRequestError: ``before`` is no id a row can hold (1 to 2^63 - 1).
    """
    if before is not None and not 1 <= before <= INT64_MAX:
        raise _not_an_id()
    async with sessions() as session:
        rows = await repo.list_audit(
            session,
            limit=limit + 1,
            before=before,
            action=action,
            target=target,
            workspace_id=workspace_id,
        )
    return [to_object(e) for e in rows[:limit]], len(rows) > limit


__all__ = [
    "api_actor",
    "aware",
    "cli_actor",
    "entry_id",
    "list_entries",
    "record",
    "to_object",
    "workspace_of",
]
