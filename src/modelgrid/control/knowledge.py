"""Knowledge bases and their documents: create, list, get, delete; add a document.

Every knowledge base belongs to one workspace and lives in this gateway's region
(``Inventory.gateway_region``): a caller whose key or workspace may not use that region is
refused with 403 ``region_not_allowed``, as for files. Another workspace's id is the same
404 as an unknown one.

Adding a document extracts its text at once (``knowledge.extract``, in a worker thread): an
empty, binary, malformed or text-less document, or one over ``knowledge.max_document_bytes``
(413), is refused and leaves nothing. An accepted document is stored ``pending`` with its
extracted sections; the indexer (``jobs.indexer``) chunks and embeds it in the background and
writes its chunks in the transaction that marks it ``ready`` (or marks it ``failed`` with the
reason). Deleting a document or a knowledge base removes every chunk, text entry and vector
with it, in one transaction of the index.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import delete, func, select

from modelgrid.config import KnowledgeSettings
from modelgrid.control.inventory import Inventory
from modelgrid.core.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RequestTooLargeError,
    ServiceUnavailableError,
)
from modelgrid.core.ids import completion_id
from modelgrid.core.types import RoutingHints
from modelgrid.knowledge.extract import detect_format, extract
from modelgrid.knowledge.index import KnowledgeIndex
from modelgrid.protocol.document_labels import check_metadata, check_tags
from modelgrid.protocol.knowledge import (
    Chunking,
    Deleted,
    DocumentList,
    DocumentObject,
    KnowledgeBaseCreate,
    KnowledgeBaseList,
    KnowledgeBaseObject,
)
from modelgrid.protocol.text import label
from modelgrid.storage.models import App, KnowledgeBase, KnowledgeDocument, VectorStoreFileBatch
from modelgrid.tenancy import audit
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import Principal

LIST_LIMIT_MAX = 1000
FILENAME_MAX = 512


def _unix(at: datetime | None) -> int | None:
    return int(aware(at).timestamp()) if at is not None else None


def _shown(ident: str) -> str:
    return ident if len(ident) <= 64 else ident[:63] + "…"


def kb_not_found(kb_id: str) -> NotFoundError:
    return NotFoundError(
        f"No such knowledge base: '{_shown(kb_id)}'.",
        param="knowledge_base_id",
        code="knowledge_base_not_found",
    )


def document_not_found(doc_id: str) -> NotFoundError:
    return NotFoundError(
        f"No such document: '{_shown(doc_id)}'.", param="document_id", code="document_not_found"
    )


def document_object(row: KnowledgeDocument) -> DocumentObject:
    return DocumentObject(
        id=row.id,
        knowledge_base_id=row.knowledge_base_id,
        filename=row.filename,
        format=row.format,
        bytes=row.bytes,
        status=row.status,  # type: ignore[arg-type]  # written from ``DocumentStatus`` only
        error=row.error,
        chunks_total=row.chunks_total,
        chunks_done=row.chunks_done,
        tokens=row.tokens,
        created_at=_unix(row.created_at) or 0,
        indexed_at=_unix(row.indexed_at),
        metadata=row.attributes or {},
        tags=row.tags or [],
    )


def kb_object(row: KnowledgeBase, documents: dict[str, int] | None = None) -> KnowledgeBaseObject:
    return KnowledgeBaseObject(
        id=row.id,
        name=row.name,
        description=row.description,
        region=row.region,
        embedding_model=row.embedding_model,
        chunking=Chunking(max_tokens=row.chunk_tokens, overlap_tokens=row.chunk_overlap),
        created_at=_unix(row.created_at) or 0,
        documents=documents or {},
    )


class KnowledgeBases:
    """A workspace's knowledge bases and documents (see the module docstring).

    Args:
        sessions: The database.
        inventory: What exists now (the gateway's region, the served models).
        index: The knowledge index (``None``: this database has none; every operation that
            needs it answers 503).
        settings: Limits and default chunking.
        embedding_models: The served embedding models (the first is the default).
        wake: Called after a document is added (wakes the indexer).
    """

    def __init__(
        self,
        sessions: Sessions,
        inventory: Callable[[], Inventory],
        index: KnowledgeIndex | None,
        settings: KnowledgeSettings,
        *,
        embedding_models: Callable[[], Iterable[str]] = lambda: (),
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._inventory = inventory
        self._index = index
        self.settings = settings
        self._embedding_models = embedding_models
        self._wake = wake

    def _require_index(self) -> KnowledgeIndex:
        if self._index is None:
            raise ServiceUnavailableError(
                "Knowledge bases need a SQLite or PostgreSQL database with the 'knowledge' "
                "extra: see docs/knowledge.md."
            )
        return self._index

    # --- knowledge bases ---------------------------------------------------------------------

    async def create(
        self, principal: Principal, body: KnowledgeBaseCreate, *, actor: str
    ) -> KnowledgeBaseObject:
        """Create a knowledge base in this gateway's region.

        Raises:
            PermissionDeniedError: the caller may not store in this region, or use the model.
            InvalidRequestError: an unknown or non-embedding model; overlap ≥ window.
            ServiceUnavailableError: no index here, or no embedding model served.
        """
        chunking = body.chunking or Chunking(
            max_tokens=self.settings.chunk_tokens, overlap_tokens=self.settings.chunk_overlap
        )
        if chunking.overlap_tokens >= chunking.max_tokens:
            raise InvalidRequestError(
                "'chunking.overlap_tokens' must be less than 'chunking.max_tokens'.",
                param="chunking.overlap_tokens",
            )
        row = await self.create_row(
            principal,
            KnowledgeBase(
                id=completion_id("kb"),
                name=body.name,
                description=body.description,
                chunk_tokens=chunking.max_tokens,
                chunk_overlap=chunking.overlap_tokens,
            ),
            body.embedding_model,
            actor=actor,
        )
        return kb_object(row)

    async def create_row(
        self,
        principal: Principal,
        row: KnowledgeBase,
        embedding_model: str | None,
        *,
        actor: str,
        action: str = "knowledge_base.create",
    ) -> KnowledgeBase:
        """Store ``row`` (its name, chunking and kind set by the caller) in the caller's
        workspace and this gateway's region, embedded by ``embedding_model`` (``None``: the
        default), with its audit entry.

        Raises:
            PermissionDeniedError: the caller may not store in this region, or use the model.
            InvalidRequestError: an unknown or non-embedding model.
            ServiceUnavailableError: no index here, or no embedding model served.
        """
        self._require_index()
        region = _residency(principal, self._inventory())
        served = list(self._embedding_models())
        model = embedding_model or self.settings.embedding_model or (served[0] if served else None)
        if model is None:
            raise ServiceUnavailableError("No embedding model is served here.")
        if model not in served:
            raise InvalidRequestError(
                f"'{_shown(model)}' is not an embedding model served here; served: "
                f"{', '.join(served) or 'none'}.",
                param="embedding_model",
                code="model_not_found",
            )
        if not principal.may_use_model(model):
            raise PermissionDeniedError(
                f"This API key may not use the model '{model}'.",
                param="embedding_model",
                code="model_not_allowed",
            )
        row.workspace_id = principal.workspace_id
        row.region = region
        row.embedding_model = model
        row.created_at = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            session.add(row)
            await audit.record(
                session,
                actor=actor,
                action=action,
                target=f"{row.kind or 'knowledge_base'}:{row.id}",
                details={"workspace_id": row.workspace_id, "name": row.name, "model": model},
            )
        return row

    async def store_document(self, row: KnowledgeDocument, *, actor: str) -> None:
        """Store a document row built by the caller (``pending`` with its sections, or
        ``failed`` with its error) with its audit entry, and wake the indexer."""
        self._require_index()
        async with self._sessions() as session, session.begin():
            session.add(row)
            await audit.record(
                session,
                actor=actor,
                action="knowledge_document.create",
                target=f"knowledge_document:{row.id}",
                details={
                    "workspace_id": row.workspace_id,
                    "knowledge_base_id": row.knowledge_base_id,
                },
            )
        self._wake()

    async def row(self, workspace_id: str, kb_id: str) -> KnowledgeBase:
        """The workspace's knowledge base. Raises ``NotFoundError``."""
        async with self._sessions() as session:
            row: KnowledgeBase | None = await session.get(KnowledgeBase, kb_id)
        if row is None or row.workspace_id != workspace_id:
            raise kb_not_found(kb_id)
        return row

    async def _counts(self, kb_ids: list[str]) -> dict[str, dict[str, int]]:
        if not kb_ids:
            return {}
        stmt = (
            select(KnowledgeDocument.knowledge_base_id, KnowledgeDocument.status, func.count())
            .where(KnowledgeDocument.knowledge_base_id.in_(kb_ids))
            .group_by(KnowledgeDocument.knowledge_base_id, KnowledgeDocument.status)
        )
        out: dict[str, dict[str, int]] = {}
        async with self._sessions() as session:
            for kb, status, n in (await session.execute(stmt)).all():
                out.setdefault(kb, {})[status] = int(n)
        return out

    async def get(self, workspace_id: str, kb_id: str) -> KnowledgeBaseObject:
        row = await self.row(workspace_id, kb_id)
        return kb_object(row, (await self._counts([row.id])).get(row.id))

    async def list(
        self, workspace_id: str, *, after: str | None = None, limit: int = 100
    ) -> KnowledgeBaseList:
        """The workspace's knowledge bases, oldest first, ``limit`` after ``after``."""
        limit = max(1, min(limit, LIST_LIMIT_MAX))
        stmt = select(KnowledgeBase).where(KnowledgeBase.workspace_id == workspace_id)
        async with self._sessions() as session:
            if after is not None:
                anchor = await session.get(KnowledgeBase, after)
                if anchor is None or anchor.workspace_id != workspace_id:
                    raise kb_not_found(after).at("after")
                stmt = stmt.where(
                    (KnowledgeBase.created_at > anchor.created_at)
                    | (
                        (KnowledgeBase.created_at == anchor.created_at)
                        & (KnowledgeBase.id > anchor.id)
                    )
                )
            stmt = stmt.order_by(KnowledgeBase.created_at, KnowledgeBase.id).limit(limit + 1)
            rows = list((await session.execute(stmt)).scalars())
        more, rows = len(rows) > limit, rows[:limit]
        counts = await self._counts([r.id for r in rows])
        data = [kb_object(r, counts.get(r.id)) for r in rows]
        return KnowledgeBaseList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=more,
        )

    async def delete(
        self,
        workspace_id: str,
        kb_id: str,
        *,
        actor: str,
        kind: Literal["knowledge base", "vector store"] = "knowledge base",
    ) -> Deleted:
        """Delete the knowledge base with its documents, chunks and vectors. ``kind`` is what
        the caller's route calls it (the 409 names it, and its ``param``
        ``knowledge_base_id`` / ``vector_store_id``).

        Raises:
            NotFoundError: unknown, or another workspace's (404).
            ConflictError: an app of the workspace retrieves from it (409; its calls would
                all fail): remove it from those apps first.
        """
        index = self._require_index()
        await self.row(workspace_id, kb_id)
        async with self._sessions() as session:
            apps = await session.execute(
                select(App.id, App.knowledge_base_ids).where(App.workspace_id == workspace_id)
            )
            users = sorted(app_id for app_id, kbs in apps if kb_id in (kbs or ()))
        if users:
            raise ConflictError(
                f"The {kind} {kb_id} is used by the app(s) {', '.join(users)}: remove it from"
                " them first.",
                param=f"{kind.replace(' ', '_')}_id",
            )
        async with self._sessions() as session, session.begin():  # a vector store's
            await session.execute(
                delete(VectorStoreFileBatch).where(
                    VectorStoreFileBatch.knowledge_base_id == kb_id,
                    VectorStoreFileBatch.workspace_id == workspace_id,
                )
            )
        if not await index.delete_knowledge_base(workspace_id, kb_id):
            raise kb_not_found(kb_id)
        async with self._sessions() as session, session.begin():
            await audit.record(
                session,
                actor=actor,
                action="knowledge_base.delete",
                target=f"knowledge_base:{kb_id}",
                details={"workspace_id": workspace_id},
            )
        return Deleted(id=kb_id, object="knowledge_base.deleted")

    async def purge_documents(self, workspace_id: str, kb_id: str) -> int:
        """Delete every document of the knowledge base with its chunks and vectors (one
        transaction each; an expired vector store's sweep). Returns how many went."""
        index = self._require_index()
        async with self._sessions() as session:
            ids = list(
                (
                    await session.execute(
                        select(KnowledgeDocument.id).where(
                            KnowledgeDocument.workspace_id == workspace_id,
                            KnowledgeDocument.knowledge_base_id == kb_id,
                        )
                    )
                ).scalars()
            )
        gone = 0
        for doc_id in ids:
            gone += int(await index.delete_document(workspace_id, doc_id))
        return gone

    async def delete_document_rows(self, workspace_id: str, doc_id: str) -> bool:
        """Delete one document with its chunks and vectors (no audit entry: the caller's)."""
        return await self._require_index().delete_document(workspace_id, doc_id)

    # --- documents ---------------------------------------------------------------------------

    async def add_document(
        self,
        principal: Principal,
        kb_id: str,
        *,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        fmt: str | None = None,
        metadata: Any = None,
        tags: Any = None,
        actor: str,
    ) -> DocumentObject:
        """Accept a document for indexing (see the module docstring), with its ``metadata``
        (an object) and ``tags`` (a list of strings), as ``protocol.document_labels`` checks
        them; DashScope's app calls filter by them (``rag_options.metadata_filter``, ``tags``).

        Raises:
            NotFoundError: no such knowledge base in the workspace.
            PermissionDeniedError: the caller may not store in this region.
            RequestTooLargeError: over ``max_document_bytes`` (413).
            InvalidRequestError: empty, binary, malformed or text-less; a bad name (its length,
                or a control character: ``protocol.text``) or format;
                bad ``metadata`` (``metadata`` or ``metadata.<key>``) or ``tags``;
                a vector store (its files come through ``control.vector_store_files``).
        """
        checked_metadata = check_metadata(metadata)
        checked_tags = check_tags(tags)
        self._require_index()
        kb = await self.row(principal.workspace_id, kb_id)
        if kb.kind == "vector_store":  # its files come from uploads, with their file ids
            raise InvalidRequestError(
                f"'{kb_id}' is a vector store: add files to it with POST "
                f"/v1/vector_stores/{kb_id}/files.",
                param="knowledge_base_id",
            )
        _residency(principal, self._inventory())
        if not 1 <= len(filename) <= FILENAME_MAX:
            raise InvalidRequestError(
                f"The file name must be 1..{FILENAME_MAX} characters.", param="file"
            )
        try:
            label(filename)
        except ValueError as e:
            raise InvalidRequestError(f"The file name {e}.", param="file") from None
        limit = self.settings.max_document_bytes
        if len(data) > limit:
            raise RequestTooLargeError(
                f"The document is {len(data)} bytes; the most accepted is {limit}.", param="file"
            )
        kind = detect_format(filename, content_type, fmt)
        sections = await asyncio.to_thread(extract, data, kind)
        row = KnowledgeDocument(
            id=completion_id("doc"),
            workspace_id=principal.workspace_id,
            knowledge_base_id=kb.id,
            api_key_id=principal.key_id,
            filename=filename,
            format=kind,
            bytes=len(data),
            status="pending",
            sections=[asdict(s) for s in sections],
            chunks_total=0,
            chunks_done=0,
            tokens=0,
            created_at=datetime.now(UTC),
            attributes=checked_metadata,
            tags=checked_tags,
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
            await audit.record(
                session,
                actor=actor,
                action="knowledge_document.create",
                target=f"knowledge_document:{row.id}",
                details={"workspace_id": row.workspace_id, "knowledge_base_id": kb.id},
            )
        self._wake()
        return document_object(row)

    async def document_row(self, workspace_id: str, kb_id: str, doc_id: str) -> KnowledgeDocument:
        await self.row(workspace_id, kb_id)
        async with self._sessions() as session:
            row: KnowledgeDocument | None = await session.get(KnowledgeDocument, doc_id)
        if row is None or row.workspace_id != workspace_id or row.knowledge_base_id != kb_id:
            raise document_not_found(doc_id)
        return row

    async def get_document(self, workspace_id: str, kb_id: str, doc_id: str) -> DocumentObject:
        return document_object(await self.document_row(workspace_id, kb_id, doc_id))

    async def list_documents(
        self, workspace_id: str, kb_id: str, *, after: str | None = None, limit: int = 100
    ) -> DocumentList:
        await self.row(workspace_id, kb_id)
        limit = max(1, min(limit, LIST_LIMIT_MAX))
        stmt = select(KnowledgeDocument).where(
            KnowledgeDocument.workspace_id == workspace_id,
            KnowledgeDocument.knowledge_base_id == kb_id,
        )
        async with self._sessions() as session:
            if after is not None:
                anchor = await session.get(KnowledgeDocument, after)
                if anchor is None or anchor.knowledge_base_id != kb_id:
                    raise document_not_found(after).at("after")
                stmt = stmt.where(
                    (KnowledgeDocument.created_at > anchor.created_at)
                    | (
                        (KnowledgeDocument.created_at == anchor.created_at)
                        & (KnowledgeDocument.id > anchor.id)
                    )
                )
            stmt = stmt.order_by(KnowledgeDocument.created_at, KnowledgeDocument.id).limit(
                limit + 1
            )
            rows = list((await session.execute(stmt)).scalars())
        more, rows = len(rows) > limit, rows[:limit]
        data = [document_object(r) for r in rows]
        return DocumentList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=more,
        )

    async def delete_document(
        self, workspace_id: str, kb_id: str, doc_id: str, *, actor: str
    ) -> Deleted:
        """Delete a document with every chunk and vector of it (an indexing in flight
        then writes nothing)."""
        index = self._require_index()
        await self.document_row(workspace_id, kb_id, doc_id)
        if not await index.delete_document(workspace_id, doc_id):
            raise document_not_found(doc_id)
        async with self._sessions() as session, session.begin():
            await audit.record(
                session,
                actor=actor,
                action="knowledge_document.delete",
                target=f"knowledge_document:{doc_id}",
                details={"workspace_id": workspace_id, "knowledge_base_id": kb_id},
            )
        return Deleted(id=doc_id, object="knowledge_base.document.deleted")


def _residency(principal: Principal, inv: Inventory) -> str:
    """This gateway's region, where knowledge bases are stored, if the caller may use it.

    Raises:
        PermissionDeniedError: ``region_not_allowed``.
    """
    hints = RoutingHints(
        allowed_regions=principal.allowed_regions,
        allowed_jurisdictions=principal.allowed_jurisdictions,
    )
    region = inv.gateway_region
    if not hints.allows(region, inv.gateway_jurisdiction):
        raise PermissionDeniedError(
            f"Knowledge bases are stored in this gateway's region '{region}', which this API "
            "key may not use.",
            code="region_not_allowed",
        )
    return region


__all__ = ["KnowledgeBases", "document_object", "kb_object"]
