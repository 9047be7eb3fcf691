"""Rows the index tests stand on: workspaces, knowledge bases and documents written straight
to the database (the control plane is not under test there)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelgrid.storage import db
from modelgrid.storage.models import KnowledgeBase, Workspace

_INSERT_DOCUMENT = text(
    "INSERT INTO knowledge_documents (id, workspace_id, knowledge_base_id, api_key_id, "
    "filename, format, bytes, status, chunks_total, chunks_done, tokens, created_at) "
    "VALUES (:d, :ws, :kb, 'k', 'x', 'text', 0, :status, 0, 0, 0, :now)"
)


async def add_knowledge_bases(engine: AsyncEngine, pairs: Iterable[tuple[str, str]]) -> None:
    """Each ``(workspace id, knowledge base id)``: the workspace and the knowledge base (its
    region ``local``, model ``m``, 800/400 chunking), each unless it exists."""
    now = datetime.now(UTC)
    async with db.sessionmaker(engine)() as session, session.begin():
        for ws, kb in pairs:
            if await session.get(Workspace, ws) is None:
                session.add(Workspace(id=ws, name=ws))
                await session.flush()
            if await session.get(KnowledgeBase, kb) is None:
                session.add(
                    KnowledgeBase(
                        id=kb,
                        workspace_id=ws,
                        name=kb,
                        region="local",
                        embedding_model="m",
                        chunk_tokens=800,
                        chunk_overlap=400,
                        created_at=now,
                    )
                )
                await session.flush()


async def add_documents(
    engine: AsyncEngine,
    workspace_id: str,
    knowledge_base_id: str,
    document_ids: Iterable[str],
    status: str = "indexing",
) -> None:
    """Each of ``document_ids`` as a ``knowledge_documents`` row of that knowledge base (key
    ``k``, file ``x``, format ``text``, 0 bytes, no chunks or tokens yet, created now), in
    one transaction. The knowledge base must exist (``add_knowledge_bases``)."""
    now = datetime.now(UTC)
    params = [
        {"d": d, "ws": workspace_id, "kb": knowledge_base_id, "status": status, "now": now}
        for d in document_ids
    ]
    if not params:
        return
    async with engine.begin() as conn:
        await conn.execute(_INSERT_DOCUMENT, params)
