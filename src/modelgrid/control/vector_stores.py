"""OpenAI's vector stores (https://platform.openai.com/docs/api-reference/vector-stores) as
knowledge bases.

A vector store IS a knowledge base (``knowledge_bases`` row of ``kind`` ``vector_store``,
id ``vs_…``): the same documents, indexer, index, hybrid retrieval, metering and residency
(stored in this gateway's region; a key that may not use it is refused with 403
``region_not_allowed``). This module gives it OpenAI's face: ``file_counts``, ``status`` and
``usage_bytes`` read from its documents' rows (``in_progress`` while one is pending or
indexing), ``metadata``, and the expiry policy ``expires_after`` = ``{"anchor":
"last_active_at", "days"}``: ``expires_at`` = ``last_active_at`` + days, where
``last_active_at`` moves on each search. Past ``expires_at`` the store answers ``status:
"expired"``, searches and new files are refused (400 ``vector_store_expired``), and
``sweep_expired`` (a background loop of the gateway) deletes its documents, chunks and
vectors. Another workspace's id, or a knowledge base that is no vector store, is the same
404 as an unknown id (``param: "vector_store_id"``).

Files and file batches: ``control.vector_store_files``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from modelgrid.control.inventory import Inventory
from modelgrid.control.knowledge import KnowledgeBases
from modelgrid.core.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from modelgrid.core.types import RoutingHints
from modelgrid.protocol.openai.vector_stores import (
    VectorStoreCreate,
    VectorStoreUpdate,
    check_metadata,
    chunking_bounds,
)
from modelgrid.storage.models import KnowledgeBase, KnowledgeDocument, VectorStoreFileBatch
from modelgrid.tenancy import audit
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import Principal

KIND = "vector_store"
LIST_LIMIT_MAX = 100
TOUCH_EVERY_S = 60  # how stale last_active_at may get before a search moves it
# A document's status as a vector-store file's
FILE_STATUS = {
    "pending": "in_progress",
    "indexing": "in_progress",
    "ready": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
DOC_STATUSES = {  # the other way: a ``filter`` of the files list
    "in_progress": ("pending", "indexing"),
    "completed": ("ready",),
    "failed": ("failed",),
    "cancelled": ("cancelled",),
}
Order = Literal["asc", "desc"]
_Row = TypeVar("_Row", KnowledgeBase, KnowledgeDocument, VectorStoreFileBatch)


def _unix(at: datetime | None) -> int | None:
    return int(aware(at).timestamp()) if at is not None else None


def _shown(ident: str) -> str:
    return ident if len(ident) <= 64 else ident[:63] + "…"


def vs_not_found(vs_id: str, param: str = "vector_store_id") -> NotFoundError:
    return NotFoundError(
        f"No vector store found with id '{_shown(vs_id)}'.",
        param=param,
        code="vector_store_not_found",
    )


def file_counts(statuses: dict[str, int]) -> dict[str, int]:
    """``file_counts`` from document counts per document status."""
    out = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
    for status, n in statuses.items():
        out[FILE_STATUS.get(status, "failed")] += n
    out["total"] = sum(out.values())
    return out


def is_expired(row: KnowledgeBase, now: datetime) -> bool:
    return row.expired_at is not None or (
        row.expires_at is not None and aware(row.expires_at) <= now
    )


def store_object(
    row: KnowledgeBase, statuses: dict[str, int], usage_bytes: int, now: datetime
) -> dict[str, Any]:
    """The ``vector_store`` object (SDK: ``types/vector_store.py``)."""
    counts = file_counts(statuses)
    status = (
        "expired"
        if is_expired(row, now)
        else "in_progress"
        if counts["in_progress"]
        else "completed"
    )
    days = row.expires_after_days
    return {
        "id": row.id,
        "object": "vector_store",
        "created_at": _unix(row.created_at),
        "name": row.name,
        "description": row.description or None,
        "usage_bytes": usage_bytes,
        "file_counts": counts,
        "status": status,
        "expires_after": {"anchor": "last_active_at", "days": days} if days else None,
        "expires_at": _unix(row.expires_at),
        "last_active_at": _unix(row.last_active_at),
        "metadata": dict(row.metadata_ or {}),
    }


async def page(
    session: AsyncSession,
    stmt: Select[Any],
    cls: type[_Row],
    *,
    after: _Row | None,
    before: _Row | None,
    order: Order,
    limit: int,
) -> tuple[list[_Row], bool]:
    """One page of ``stmt``'s rows by ``(created_at, id)`` in ``order``: those after the
    cursor row ``after`` and before ``before`` (OpenAI's cursor pagination), at most
    ``limit``; and whether more follow on that side."""
    desc = order == "desc"

    def later(a: _Row) -> Any:
        return (cls.created_at > a.created_at) | (
            (cls.created_at == a.created_at) & (cls.id > a.id)
        )

    def earlier(a: _Row) -> Any:
        return (cls.created_at < a.created_at) | (
            (cls.created_at == a.created_at) & (cls.id < a.id)
        )

    if after is not None:
        stmt = stmt.where(earlier(after) if desc else later(after))
    if before is not None:
        stmt = stmt.where(later(before) if desc else earlier(before))
    backwards = before is not None and after is None  # the rows just before the cursor
    ascending = desc == backwards
    keys = (cls.created_at, cls.id) if ascending else (cls.created_at.desc(), cls.id.desc())
    rows: list[_Row] = list(
        (await session.execute(stmt.order_by(*keys).limit(limit + 1))).scalars()
    )
    more, rows = len(rows) > limit, rows[:limit]
    if backwards:
        rows.reverse()
    return rows, more


def list_object(data: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": more,
    }


class VectorStores:
    """A workspace's vector stores (see the module docstring).

    Args:
        sessions: The database.
        bases: The knowledge bases underneath (their index, residency and audit).
        inventory: What exists now (the regions' jurisdictions for the residency check).
        clock: Now, in UTC (tests move it).
    """

    def __init__(
        self,
        sessions: Sessions,
        bases: KnowledgeBases,
        inventory: Callable[[], Inventory],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self.bases = bases
        self._inventory = inventory
        self.clock = clock

    # --- reads -------------------------------------------------------------------------------

    async def row(
        self, workspace_id: str, vs_id: str, param: str = "vector_store_id"
    ) -> KnowledgeBase:
        """The workspace's vector store. Raises ``NotFoundError`` (404)."""
        async with self._sessions() as session:
            row: KnowledgeBase | None = await session.get(KnowledgeBase, vs_id)
        if row is None or row.workspace_id != workspace_id or row.kind != KIND:
            raise vs_not_found(vs_id, param)
        return row

    async def usable(
        self, principal: Principal, vs_id: str, param: str = "vector_store_id"
    ) -> KnowledgeBase:
        """The vector store, if the caller may search it or add files to it now.

        Raises:
            NotFoundError: unknown, or another workspace's (404).
            PermissionDeniedError: stored in a region the key may not use (403
                ``region_not_allowed``).
            InvalidRequestError: expired (400 ``vector_store_expired``).
        """
        row = await self.row(principal.workspace_id, vs_id, param)
        inv = self._inventory()
        jurisdiction = inv.gateway_jurisdiction if row.region == inv.gateway_region else ""
        hints = RoutingHints(
            allowed_regions=principal.allowed_regions,
            allowed_jurisdictions=principal.allowed_jurisdictions,
        )
        if not hints.allows(row.region, jurisdiction):
            raise PermissionDeniedError(
                f"The vector store '{vs_id}' is stored in the region '{row.region}', which this "
                "API key may not use.",
                param=param,
                code="region_not_allowed",
            )
        if is_expired(row, self.clock()):
            raise InvalidRequestError(
                f"The vector store '{vs_id}' has expired.",
                param=param,
                code="vector_store_expired",
            )
        return row

    async def stats(self, kb_ids: Sequence[str]) -> dict[str, tuple[dict[str, int], int]]:
        """Per vector store: its documents counted per status, and the bytes of its
        completed files."""
        if not kb_ids:
            return {}
        stmt = (
            select(
                KnowledgeDocument.knowledge_base_id,
                KnowledgeDocument.status,
                func.count(),
                func.sum(KnowledgeDocument.bytes),
            )
            .where(KnowledgeDocument.knowledge_base_id.in_(list(kb_ids)))
            .group_by(KnowledgeDocument.knowledge_base_id, KnowledgeDocument.status)
        )
        out: dict[str, tuple[dict[str, int], int]] = {}
        async with self._sessions() as session:
            for kb, status, n, size in (await session.execute(stmt)).all():
                counts, used = out.get(kb, ({}, 0))
                counts[status] = int(n)
                out[kb] = (counts, used + (int(size or 0) if status == "ready" else 0))
        return out

    async def render(self, rows: Sequence[KnowledgeBase]) -> list[dict[str, Any]]:
        stats = await self.stats([r.id for r in rows])
        now = self.clock()
        return [store_object(r, *stats.get(r.id, ({}, 0)), now) for r in rows]

    async def get(self, workspace_id: str, vs_id: str) -> dict[str, Any]:
        return (await self.render([await self.row(workspace_id, vs_id)]))[0]

    async def list(
        self,
        workspace_id: str,
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int = 20,
        order: Order = "desc",
    ) -> dict[str, Any]:
        """A page of the workspace's vector stores (``limit`` 1..100, ``order`` by creation).

        Raises:
            NotFoundError: ``after`` / ``before`` is no vector store of the workspace.
        """
        stmt = select(KnowledgeBase).where(
            KnowledgeBase.workspace_id == workspace_id, KnowledgeBase.kind == KIND
        )
        anchors = [
            await self.row(workspace_id, a, name) if a is not None else None
            for a, name in ((after, "after"), (before, "before"))
        ]
        async with self._sessions() as session:
            rows, more = await page(
                session,
                stmt,
                KnowledgeBase,
                after=anchors[0],
                before=anchors[1],
                order=order,
                limit=max(1, min(limit, LIST_LIMIT_MAX)),
            )
        return list_object(await self.render(rows), more)

    # --- changes -----------------------------------------------------------------------------

    async def create(
        self, principal: Principal, body: VectorStoreCreate, *, actor: str
    ) -> KnowledgeBase:
        """Create the store (its files are the caller's to add: ``VectorStoreFiles``).

        Raises:
            InvalidRequestError: bad metadata or chunking bounds (400 naming the field).
            PermissionDeniedError, ServiceUnavailableError: as ``KnowledgeBases.create_row``.
        """
        check_metadata(body.metadata)
        size, overlap = chunking_bounds(body.chunking_strategy)
        now = self.clock()
        days = body.expires_after.days if body.expires_after is not None else None
        row = KnowledgeBase(
            id=f"vs_{secrets.token_hex(12)}",
            kind=KIND,
            name=body.name or "",
            description=body.description or "",
            chunk_tokens=size,
            chunk_overlap=overlap,
            metadata_=dict(body.metadata or {}),
            expires_after_days=days,
            last_active_at=now,
            expires_at=now + timedelta(days=days) if days else None,
        )
        return await self.bases.create_row(
            principal, row, None, actor=actor, action="vector_store.create"
        )

    async def update(
        self, workspace_id: str, vs_id: str, body: VectorStoreUpdate, *, actor: str
    ) -> dict[str, Any]:
        """Change the fields sent (``expires_after: null`` removes the policy).

        Raises:
            NotFoundError: unknown, or another workspace's.
            InvalidRequestError: bad metadata.
        """
        row = await self.row(workspace_id, vs_id)
        sent = body.model_fields_set
        values: dict[str, Any] = {}
        if "name" in sent and body.name is not None:
            values["name"] = body.name
        if "metadata" in sent:
            check_metadata(body.metadata)
            values["metadata_"] = dict(body.metadata or {})
        if "expires_after" in sent:
            days = body.expires_after.days if body.expires_after is not None else None
            anchor = aware(row.last_active_at or row.created_at)
            values["expires_after_days"] = days
            values["expires_at"] = anchor + timedelta(days=days) if days else None
        if values:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    update(KnowledgeBase).where(KnowledgeBase.id == row.id).values(**values)
                )
                await audit.record(
                    session,
                    actor=actor,
                    action="vector_store.update",
                    target=f"vector_store:{row.id}",
                    details={"workspace_id": workspace_id, "fields": sorted(sent)},
                )
        return await self.get(workspace_id, vs_id)

    async def delete(self, workspace_id: str, vs_id: str, *, actor: str) -> dict[str, Any]:
        """Delete the store with its files' chunks and vectors (``KnowledgeBases.delete``:
        a store an app retrieves from is a 409)."""
        await self.row(workspace_id, vs_id)
        await self.bases.delete(workspace_id, vs_id, actor=actor, kind="vector store")
        return {"id": vs_id, "object": "vector_store.deleted", "deleted": True}

    async def touch(self, rows: Sequence[KnowledgeBase]) -> None:
        """A search used these stores: ``last_active_at`` is now, and ``expires_at`` moves
        with it — at most once a minute a store (``TOUCH_EVERY_S``: expiry counts in days,
        and a search then writes nothing)."""
        now = self.clock()
        due = [
            r
            for r in rows
            if r.last_active_at is None
            or now - aware(r.last_active_at) >= timedelta(seconds=TOUCH_EVERY_S)
        ]
        if not due:
            return
        async with self._sessions() as session, session.begin():
            for row in due:
                days = row.expires_after_days
                await session.execute(
                    update(KnowledgeBase)
                    .where(KnowledgeBase.id == row.id, KnowledgeBase.expired_at.is_(None))
                    .values(
                        last_active_at=now,
                        expires_at=now + timedelta(days=days) if days else None,
                    )
                )

    async def sweep_expired(self) -> int:
        """Delete the documents, chunks and vectors of every vector store past its
        ``expires_at`` (its row stays, answering ``status: "expired"``); the file batches
        left are cancelled. Returns how many stores were swept."""
        now = self.clock()
        async with self._sessions() as session:
            due = list(
                (
                    await session.execute(
                        select(KnowledgeBase).where(
                            KnowledgeBase.kind == KIND,
                            KnowledgeBase.expired_at.is_(None),
                            KnowledgeBase.expires_at <= now,
                        )
                    )
                ).scalars()
            )
        for row in due:
            await self.bases.purge_documents(row.workspace_id, row.id)
            async with self._sessions() as session, session.begin():
                await session.execute(
                    update(KnowledgeBase).where(KnowledgeBase.id == row.id).values(expired_at=now)
                )
                await session.execute(
                    update(VectorStoreFileBatch)
                    .where(
                        VectorStoreFileBatch.knowledge_base_id == row.id,
                        VectorStoreFileBatch.cancelled_at.is_(None),
                    )
                    .values(cancelled_at=now)
                )
                await audit.record(
                    session,
                    actor="system:expiry",
                    action="vector_store.expire",
                    target=f"vector_store:{row.id}",
                    details={"workspace_id": row.workspace_id},
                )
        return len(due)


__all__ = [
    "DOC_STATUSES",
    "FILE_STATUS",
    "KIND",
    "VectorStores",
    "file_counts",
    "list_object",
    "page",
    "store_object",
    "vs_not_found",
]
