"""A vector store's files and file batches
(https://platform.openai.com/docs/api-reference/vector-stores-files, …-file-batches).

A vector-store file is a knowledge document made from a file the workspace uploaded with
``purpose: "assistants"`` (``control.files``): its id on the wire is the file's id, its
``status`` its document's (``in_progress`` while pending or indexing, ``completed`` when
ready, ``failed`` with ``last_error``, ``cancelled``), its ``attributes`` filterable in
searches (``protocol.openai.attribute_filters``), its chunking its own (``chunking_strategy``;
else the store's). The file's text is extracted when it is added (``knowledge.extract``): a
file with no text, binary bytes or a malformed PDF is stored ``failed`` with
``last_error.code`` ``invalid_file`` and leaves no chunk; the indexer (``jobs.indexer``)
embeds the rest in the background, billed to the key that added it. Adding a file the
store already has answers the file as it is.

Refused before anything is written: an unknown file or one of another workspace (404
``file_not_found``, ``param: "file_id"``), a file of another purpose (400 ``invalid_file``),
bad ``attributes`` or chunking bounds (400 naming the field), an expired store (400), a
store in a region the key may not use (403). A batch checks every file first: one bad id
refuses the whole batch. Cancelling a batch marks its files not yet indexed ``cancelled``
(an indexing in flight then writes nothing).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from modelgrid.control.files import Files
from modelgrid.control.vector_stores import (
    DOC_STATUSES,
    FILE_STATUS,
    LIST_LIMIT_MAX,
    Order,
    VectorStores,
    file_counts,
    list_object,
    page,
)
from modelgrid.core.errors import InvalidRequestError, NotFoundError
from modelgrid.core.ids import completion_id
from modelgrid.knowledge.extract import detect_format, extract
from modelgrid.protocol.openai.attribute_filters import check_attributes
from modelgrid.protocol.openai.vector_stores import (
    FileBatchCreate,
    chunking_bounds,
    chunking_object,
)
from modelgrid.storage.models import (
    KnowledgeBase,
    KnowledgeChunk,
    KnowledgeDocument,
    StoredFile,
    VectorStoreFileBatch,
)
from modelgrid.tenancy import audit
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import Principal

UNFINISHED = ("pending", "indexing")


def _unix(at: datetime | None) -> int | None:
    return int(aware(at).timestamp()) if at is not None else None


def _file_not_found(file_id: str, param: str = "file_id") -> NotFoundError:
    shown = file_id if len(file_id) <= 64 else file_id[:63] + "…"
    return NotFoundError(f"No such file: '{shown}'.", param=param, code="file_not_found")


def vs_file_object(doc: KnowledgeDocument) -> dict[str, Any]:
    """The ``vector_store.file`` object (SDK: ``types/vector_stores/vector_store_file.py``);
    ``usage_bytes``: the file's size once completed, else 0."""
    status = FILE_STATUS.get(doc.status, "failed")
    return {
        "id": doc.file_id,
        "object": "vector_store.file",
        "usage_bytes": doc.bytes if status == "completed" else 0,
        "created_at": _unix(doc.created_at),
        "vector_store_id": doc.knowledge_base_id,
        "status": status,
        "last_error": (
            {"code": doc.error_code or "server_error", "message": doc.error or "failed"}
            if status == "failed"
            else None
        ),
        "chunking_strategy": chunking_object(doc.chunk_tokens or 0, doc.chunk_overlap or 0),
        "attributes": dict(doc.attributes or {}),
    }


def batch_object(batch: VectorStoreFileBatch, statuses: dict[str, int]) -> dict[str, Any]:
    """The ``vector_store.files_batch`` object (SDK: ``vector_store_file_batch.py``)."""
    counts = file_counts(statuses)
    if batch.cancelled_at is not None:
        status = "cancelled"
    elif counts["in_progress"]:
        status = "in_progress"
    elif counts["total"] and counts["failed"] == counts["total"]:
        status = "failed"
    else:
        status = "completed"
    return {
        "id": batch.id,
        "object": "vector_store.files_batch",
        "created_at": _unix(batch.created_at),
        "vector_store_id": batch.knowledge_base_id,
        "status": status,
        "file_counts": counts,
    }


class VectorStoreFiles:
    """Files and file batches of the workspace's vector stores (see the module docstring).

    Args:
        sessions: The database.
        stores: The vector stores (and, through them, the knowledge bases).
        files: The Files API's files (where the bytes come from).
    """

    def __init__(self, sessions: Sessions, stores: VectorStores, files: Files) -> None:
        self._sessions = sessions
        self.stores = stores
        self._files = files

    # --- adding ------------------------------------------------------------------------------

    async def _source(self, workspace_id: str, file_id: str, param: str) -> StoredFile:
        try:
            row = await self._files.row(workspace_id, file_id)
        except NotFoundError:
            raise _file_not_found(file_id, param) from None
        if row.purpose != "assistants":
            raise InvalidRequestError(
                f"File '{file_id}' has purpose '{row.purpose}'; a vector store takes files "
                "uploaded with purpose 'assistants'.",
                param=param,
                code="invalid_file",
            )
        return row

    async def check_sources(self, workspace_id: str, file_ids: Sequence[str]) -> None:
        """Raises as ``add`` for the first unknown file, or one of another purpose
        (``param``: ``file_ids[i]``)."""
        for i, file_id in enumerate(file_ids):
            await self._source(workspace_id, file_id, f"file_ids[{i}]")

    async def _existing(self, kb_id: str, file_id: str) -> KnowledgeDocument | None:
        async with self._sessions() as session:
            found = await session.execute(
                select(KnowledgeDocument).where(
                    KnowledgeDocument.knowledge_base_id == kb_id,
                    KnowledgeDocument.file_id == file_id,
                )
            )
            doc: KnowledgeDocument | None = found.scalars().first()
            return doc

    async def _read(self, source: StoredFile) -> bytes:
        chunks: Iterator[bytes] = await self._files.content(source.workspace_id, source.id)

        def join() -> bytes:
            try:
                return b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()

        return await asyncio.to_thread(join)

    async def _attach(
        self,
        principal: Principal,
        store: KnowledgeBase,
        source: StoredFile,
        attributes: dict[str, Any] | None,
        chunking: tuple[int, int],
        *,
        batch_id: str | None,
        actor: str,
    ) -> KnowledgeDocument:
        existing = await self._existing(store.id, source.id)
        if existing is not None:
            return existing
        doc = KnowledgeDocument(
            id=completion_id("doc"),
            workspace_id=principal.workspace_id,
            knowledge_base_id=store.id,
            api_key_id=principal.key_id,
            filename=source.filename,
            format="text",
            bytes=source.bytes,
            status="pending",
            chunks_total=0,
            chunks_done=0,
            tokens=0,
            created_at=self.stores.clock(),
            file_id=source.id,
            attributes=attributes or {},
            batch_id=batch_id,
            chunk_tokens=chunking[0],
            chunk_overlap=chunking[1],
        )
        limit = self.stores.bases.settings.max_document_bytes
        try:
            if source.bytes > limit:
                raise InvalidRequestError(f"The file is over {limit} bytes, the most indexed.")
            doc.format = detect_format(source.filename)
            sections = await asyncio.to_thread(extract, await self._read(source), doc.format)
            doc.sections = [asdict(s) for s in sections]
        except (InvalidRequestError, NotFoundError) as exc:  # stored failed, as OpenAI does
            doc.status, doc.error, doc.error_code = "failed", exc.message, "invalid_file"
        await self.stores.bases.store_document(doc, actor=actor)
        return doc

    async def add(
        self,
        principal: Principal,
        vs_id: str,
        file_id: str,
        *,
        attributes: dict[str, Any] | None = None,
        chunking_strategy: dict[str, Any] | None = None,
        actor: str,
    ) -> dict[str, Any]:
        """Add an uploaded file to the store (indexed in the background).

        Raises:
            NotFoundError: unknown store or file (or another workspace's).
            InvalidRequestError: a file not of purpose ``assistants``, bad attributes or
                chunking, an expired store.
            PermissionDeniedError: the store's region is not the key's to use.
        """
        store = await self.stores.usable(principal, vs_id)
        attrs = check_attributes(attributes)
        chunking = (
            chunking_bounds(chunking_strategy)
            if chunking_strategy is not None
            else (store.chunk_tokens, store.chunk_overlap)
        )
        source = await self._source(principal.workspace_id, file_id, "file_id")
        doc = await self._attach(
            principal, store, source, attrs, chunking, batch_id=None, actor=actor
        )
        return vs_file_object(doc)

    # --- reading and changing ----------------------------------------------------------------

    async def doc(self, workspace_id: str, vs_id: str, file_id: str) -> KnowledgeDocument:
        """The store's file. Raises ``NotFoundError`` (the store's, else the file's)."""
        await self.stores.row(workspace_id, vs_id)
        found = await self._existing(vs_id, file_id)
        if found is None or found.workspace_id != workspace_id:
            raise _file_not_found(file_id)
        return found

    async def get(self, workspace_id: str, vs_id: str, file_id: str) -> dict[str, Any]:
        return vs_file_object(await self.doc(workspace_id, vs_id, file_id))

    async def list(
        self,
        workspace_id: str,
        vs_id: str,
        *,
        status: str | None = None,
        after: str | None = None,
        before: str | None = None,
        limit: int = 20,
        order: Order = "desc",
        batch_id: str | None = None,
    ) -> dict[str, Any]:
        """A page of the store's files (``status``: ``in_progress``, ``completed``,
        ``failed``, ``cancelled``; ``batch_id``: a batch's files only).

        Raises:
            NotFoundError: the store, or ``after`` / ``before`` is none of its files.
            InvalidRequestError: an unknown ``filter``.
        """
        await self.stores.row(workspace_id, vs_id)
        stmt = select(KnowledgeDocument).where(
            KnowledgeDocument.workspace_id == workspace_id,
            KnowledgeDocument.knowledge_base_id == vs_id,
            KnowledgeDocument.file_id.is_not(None),
        )
        if status is not None:
            if status not in DOC_STATUSES:
                raise InvalidRequestError(
                    f"'filter' must be one of {', '.join(DOC_STATUSES)}.",
                    param="filter",
                    code="invalid_value",
                )
            stmt = stmt.where(KnowledgeDocument.status.in_(DOC_STATUSES[status]))
        if batch_id is not None:
            stmt = stmt.where(KnowledgeDocument.batch_id == batch_id)
        anchors: list[KnowledgeDocument | None] = []
        for cursor, name in ((after, "after"), (before, "before")):
            found = await self._existing(vs_id, cursor) if cursor is not None else None
            if cursor is not None and found is None:
                raise _file_not_found(cursor, name)
            anchors.append(found)
        async with self._sessions() as session:
            rows, more = await page(
                session,
                stmt,
                KnowledgeDocument,
                after=anchors[0],
                before=anchors[1],
                order=order,
                limit=max(1, min(limit, LIST_LIMIT_MAX)),
            )
        return list_object([vs_file_object(r) for r in rows], more)

    async def update(
        self, workspace_id: str, vs_id: str, file_id: str, attributes: Any, *, actor: str
    ) -> dict[str, Any]:
        """Replace the file's ``attributes``. Raises ``NotFoundError``, ``InvalidRequestError``."""
        doc = await self.doc(workspace_id, vs_id, file_id)
        attrs = check_attributes(attributes) or {}
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(KnowledgeDocument)
                .where(KnowledgeDocument.id == doc.id)
                .values(attributes=attrs)
            )
            await audit.record(
                session,
                actor=actor,
                action="vector_store.file.update",
                target=f"vector_store:{vs_id}",
                details={"workspace_id": workspace_id, "file_id": file_id},
            )
        doc.attributes = attrs
        return vs_file_object(doc)

    async def delete(
        self, workspace_id: str, vs_id: str, file_id: str, *, actor: str
    ) -> dict[str, Any]:
        """Remove the file from the store with its chunks and vectors (the uploaded file
        itself stays, as in OpenAI's API)."""
        doc = await self.doc(workspace_id, vs_id, file_id)
        if not await self.stores.bases.delete_document_rows(workspace_id, doc.id):
            raise _file_not_found(file_id)
        async with self._sessions() as session, session.begin():
            await audit.record(
                session,
                actor=actor,
                action="vector_store.file.delete",
                target=f"vector_store:{vs_id}",
                details={"workspace_id": workspace_id, "file_id": file_id},
            )
        return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}

    async def content(self, workspace_id: str, vs_id: str, file_id: str) -> dict[str, Any]:
        """The file's indexed text: its chunks in order, one ``text`` part each (chunks
        overlap by the chunking's overlap; none before the file is completed)."""
        doc = await self.doc(workspace_id, vs_id, file_id)
        async with self._sessions() as session:
            texts = list(
                (
                    await session.execute(
                        select(KnowledgeChunk.text)
                        .where(
                            KnowledgeChunk.workspace_id == workspace_id,
                            KnowledgeChunk.document_id == doc.id,
                        )
                        .order_by(KnowledgeChunk.ordinal)
                    )
                ).scalars()
            )
        return {
            "object": "vector_store.file_content.page",
            "data": [{"type": "text", "text": t} for t in texts],
            "has_more": False,
            "next_page": None,
        }

    # --- batches -----------------------------------------------------------------------------

    async def create_batch(
        self, principal: Principal, vs_id: str, body: FileBatchCreate, *, actor: str
    ) -> dict[str, Any]:
        """Add several files at once (every file checked before any is added).

        Raises:
            InvalidRequestError: both or neither of ``file_ids`` and ``files``; a file as in
                ``add``.
            NotFoundError, PermissionDeniedError: as ``add``.
        """
        store = await self.stores.usable(principal, vs_id)
        if (body.file_ids is None) == (body.files is None) or not (body.file_ids or body.files):
            raise InvalidRequestError(
                "Give either 'file_ids' or 'files' (a non-empty list), not both.",
                param="file_ids",
            )
        default = (store.chunk_tokens, store.chunk_overlap)
        wanted: list[tuple[str, str, dict[str, Any] | None, tuple[int, int]]] = []
        if body.file_ids is not None:
            attrs = check_attributes(body.attributes)
            chunking = (
                chunking_bounds(body.chunking_strategy) if body.chunking_strategy else default
            )
            wanted = [(f, f"file_ids[{i}]", attrs, chunking) for i, f in enumerate(body.file_ids)]
        else:
            for i, f in enumerate(body.files or ()):
                where = f"files[{i}]"
                attrs = check_attributes(f.attributes, f"{where}.attributes")
                chunking = (
                    chunking_bounds(f.chunking_strategy, f"{where}.chunking_strategy")
                    if f.chunking_strategy
                    else default
                )
                wanted.append((f.file_id, f"{where}.file_id", attrs, chunking))
        sources = [
            await self._source(principal.workspace_id, file_id, param)
            for file_id, param, _, _ in wanted
        ]
        batch = VectorStoreFileBatch(
            id=f"vsfb_{secrets.token_hex(12)}",
            workspace_id=principal.workspace_id,
            knowledge_base_id=store.id,
            created_at=self.stores.clock(),
        )
        async with self._sessions() as session, session.begin():
            session.add(batch)
        for source, (_, _, attrs, chunking) in zip(sources, wanted, strict=True):
            await self._attach(
                principal, store, source, attrs, chunking, batch_id=batch.id, actor=actor
            )
        return await self.get_batch(principal.workspace_id, vs_id, batch.id)

    async def _batch(self, workspace_id: str, vs_id: str, batch_id: str) -> VectorStoreFileBatch:
        await self.stores.row(workspace_id, vs_id)
        async with self._sessions() as session:
            batch: VectorStoreFileBatch | None = await session.get(VectorStoreFileBatch, batch_id)
        if batch is None or batch.workspace_id != workspace_id or batch.knowledge_base_id != vs_id:
            raise NotFoundError(
                f"No file batch found with id '{batch_id[:64]}'.",
                param="batch_id",
                code="file_batch_not_found",
            )
        return batch

    async def get_batch(self, workspace_id: str, vs_id: str, batch_id: str) -> dict[str, Any]:
        batch = await self._batch(workspace_id, vs_id, batch_id)
        return batch_object(batch, await self._batch_counts(batch.id))

    async def _batch_counts(self, batch_id: str) -> dict[str, int]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(KnowledgeDocument.status, func.count())
                .where(KnowledgeDocument.batch_id == batch_id)
                .group_by(KnowledgeDocument.status)
            )
            return {status: int(n) for status, n in rows.all()}

    async def cancel_batch(
        self, workspace_id: str, vs_id: str, batch_id: str, *, actor: str
    ) -> dict[str, Any]:
        """Cancel the batch: its files not yet indexed become ``cancelled``."""
        batch = await self._batch(workspace_id, vs_id, batch_id)
        now = self.stores.clock()
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(KnowledgeDocument)
                .where(
                    KnowledgeDocument.batch_id == batch.id,
                    KnowledgeDocument.status.in_(UNFINISHED),
                )
                .values(status="cancelled", lease_owner=None, lease_until=None, sections=None)
            )
            if batch.cancelled_at is None:
                await session.execute(
                    update(VectorStoreFileBatch)
                    .where(VectorStoreFileBatch.id == batch.id)
                    .values(cancelled_at=now)
                )
                batch.cancelled_at = now
            await audit.record(
                session,
                actor=actor,
                action="vector_store.file_batch.cancel",
                target=f"vector_store:{vs_id}",
                details={"workspace_id": workspace_id, "batch_id": batch.id},
            )
        return batch_object(batch, await self._batch_counts(batch.id))


__all__ = ["VectorStoreFiles", "batch_object", "vs_file_object"]
