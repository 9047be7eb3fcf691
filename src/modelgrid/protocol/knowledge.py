"""Wire objects of modelgrid's knowledge-base API (``/v1/knowledge_bases``).

Shaped like OpenAI's objects (``id``, ``object``, ``created_at`` in unix seconds, list pages
with ``data``, ``first_id``, ``last_id``, ``has_more``); the API itself is modelgrid's own
(``docs/knowledge.md``). OpenAI's ``/v1/vector_stores`` is a later layer over the same
knowledge bases.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from modelgrid.protocol.text import Label, Prose

DocumentStatus = Literal["pending", "indexing", "ready", "failed"]
SearchMode = Literal["hybrid", "dense", "lexical"]


class Chunking(BaseModel):
    """Window and overlap in the embedding model's tokens (overlap < max_tokens)."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(ge=16, le=8192)
    overlap_tokens: int = Field(ge=0, le=8191)


class KnowledgeBaseCreate(BaseModel):
    """``POST /v1/knowledge_bases``."""

    model_config = ConfigDict(extra="forbid")

    name: Label = Field(min_length=1, max_length=200)
    description: Prose = Field(default="", max_length=2000)
    embedding_model: str | None = Field(default=None, max_length=200)
    chunking: Chunking | None = None


class KnowledgeBaseObject(BaseModel):
    id: str
    object: Literal["knowledge_base"] = "knowledge_base"
    name: str
    description: str
    region: str
    embedding_model: str
    chunking: Chunking
    created_at: int
    documents: dict[str, int] = Field(default_factory=dict)  # per status


class KnowledgeBaseList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KnowledgeBaseObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class DocumentObject(BaseModel):
    """A document and its indexing progress (``chunks_done`` of ``chunks_total`` while
    ``indexing``; ``error`` when ``failed``), with the ``metadata`` and ``tags`` it was
    added with (``protocol.document_labels``; ``{}`` and ``[]`` when none)."""

    id: str
    object: Literal["knowledge_base.document"] = "knowledge_base.document"
    knowledge_base_id: str
    filename: str
    format: str
    bytes: int
    status: DocumentStatus
    error: str | None = None
    chunks_total: int
    chunks_done: int
    tokens: int
    created_at: int
    indexed_at: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class Deleted(BaseModel):
    id: str
    object: str
    deleted: Literal[True] = True


class SearchRequest(BaseModel):
    """``POST /v1/knowledge_bases/{id}/search``. ``rerank``: the served chat model re-ranks
    the best ``max(top_k, RERANK_CANDIDATES)`` chunks (``serving.rerank``; opt-in)."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=8000)
    top_k: StrictInt = Field(default=5, ge=1, le=100)
    mode: SearchMode = "hybrid"
    rerank: StrictBool = False


class SearchHit(BaseModel):
    """A chunk, its score (hybrid: the fused score, 0..1; dense: cosine similarity; lexical:
    BM25; re-ranked: the judge's P(yes), 0..1, also in ``rerank_score``) and its rank in each
    retriever (``None``: not among its candidates)."""

    chunk_id: int
    document_id: str
    ordinal: int
    heading: str
    text: str
    tokens: int
    score: float
    dense_rank: int | None = None
    lexical_rank: int | None = None
    rerank_score: float | None = None  # ``None``: not re-ranked


class SearchResults(BaseModel):
    object: Literal["knowledge_base.search_results"] = "knowledge_base.search_results"
    knowledge_base_id: str
    query: str
    mode: SearchMode
    data: list[SearchHit]


__all__ = [
    "Chunking",
    "Deleted",
    "DocumentList",
    "DocumentObject",
    "DocumentStatus",
    "KnowledgeBaseCreate",
    "KnowledgeBaseList",
    "KnowledgeBaseObject",
    "SearchHit",
    "SearchMode",
    "SearchRequest",
    "SearchResults",
]
