"""Rows the index tests stand on: workspaces and knowledge bases written straight to the
database (the control plane is not under test there)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from modelgrid.storage import db
from modelgrid.storage.models import KnowledgeBase, Workspace


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
