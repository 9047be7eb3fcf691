"""The knowledge index port: chunks with their vectors and full text, per workspace.

``KnowledgeIndex`` is what the control plane, the indexer and retrieval need from a store;
``sqlite_index.SqliteIndex`` implements it over the gateway's SQLite file (sqlite-vec and
FTS5), ``pg_index.PgIndex`` over PostgreSQL (full-text search; pgvector, or an exact vector
scan in the process where the server lacks it).
Every read takes the workspace and the knowledge base and returns only their chunks; every
write of a document's chunks is one transaction with the document's status, so a document is
either ready with all its chunks or has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from modelgrid.knowledge.chunking import Chunk


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk as retrieval returns it."""

    id: int
    document_id: str
    knowledge_base_id: str
    ordinal: int
    heading: str
    text: str
    tokens: int


class KnowledgeIndex(Protocol):
    async def write_document(
        self,
        workspace_id: str,
        knowledge_base_id: str,
        document_id: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[bytes],
        dimensions: int,
    ) -> bool:
        """Store a document's chunks, their text index and vectors, and mark the document
        ``ready``, in one transaction — only while the document is still ``indexing``
        (``False``: it was deleted meanwhile, nothing written)."""
        ...

    async def delete_document(self, workspace_id: str, document_id: str) -> bool:
        """Delete the document row with every chunk, text entry and vector of it, in one
        transaction (``False``: no such document in the workspace)."""
        ...

    async def delete_knowledge_base(self, workspace_id: str, knowledge_base_id: str) -> bool:
        """Delete the knowledge base, its documents, chunks and vectors (one transaction)."""
        ...

    async def dense(
        self,
        workspace_id: str,
        knowledge_base_id: str,
        vector: bytes,
        dimensions: int,
        k: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        """The ``k`` nearest chunks by cosine distance: ``(chunk id, distance)``, nearest
        first; with ``documents``, only those documents' chunks (exactly: an attribute
        filter's survivors are ranked among themselves, not cut from a top ``k``)."""
        ...

    async def lexical(
        self,
        workspace_id: str,
        knowledge_base_id: str,
        query: str,
        k: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        """The ``k`` best chunks by BM25: ``(chunk id, score)`` (higher is better); with
        ``documents``, only those documents' chunks."""
        ...

    async def chunks(self, workspace_id: str, ids: Sequence[int]) -> dict[int, StoredChunk]:
        """The workspace's chunks among ``ids``."""
        ...

    async def aclose(self) -> None: ...


__all__ = ["KnowledgeIndex", "StoredChunk"]
