"""Typed declarative models. ORM classes singular, tables plural; one naming convention so
SQLite and PostgreSQL produce the same constraint names (and Alembic finds no drift).

Money is integer micro-units of ``currency`` (``*_micros``); prices are per 1M tokens.
Limits left ``None`` mean "no limit at this level".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class LimitsMixin:
    """Per-minute rates, concurrency and monthly budgets (None = unlimited)."""

    rpm_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    tpm_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    monthly_budget_micros: Mapped[int | None] = mapped_column(BigInteger, default=None)
    monthly_token_budget: Mapped[int | None] = mapped_column(BigInteger, default=None)


class Workspace(LimitsMixin, Base):
    """A tenant: owns API keys and is billed for their usage."""

    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    home_region: Mapped[str] = mapped_column(String(64), default="local")
    allowed_regions: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    allowed_jurisdictions: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(LimitsMixin, Base):
    """An API key. Only the SHA-256 of the secret is stored; ``id`` is the public key id that
    appears in the key itself (``mg-<id>_<secret>``) and in ``prefix`` for display.
    ``allowed_models`` / ``allowed_regions`` / ``allowed_jurisdictions`` narrow the workspace's
    scope (None = no narrowing)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16), default="tenant")  # tenant | admin
    prefix: Mapped[str] = mapped_column(String(40))
    secret_hash: Mapped[str] = mapped_column(String(64))
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    allowed_regions: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    allowed_jurisdictions: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Price(Base):
    """A price book entry: from ``effective_from`` on, ``model`` (in ``region``, or any region
    when None) costs these micro-units of ``currency`` per 1M tokens. Entries are never
    updated in place, so past bills never change."""

    __tablename__ = "prices"
    __table_args__ = (Index("ix_prices_model_effective_from", "model", "effective_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(64), default=None)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    input_micros_per_1m: Mapped[int] = mapped_column(BigInteger)
    cached_input_micros_per_1m: Mapped[int] = mapped_column(BigInteger)
    output_micros_per_1m: Mapped[int] = mapped_column(BigInteger)
    batch_percent: Mapped[int] = mapped_column(Integer, default=50, server_default="50")
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UsageRecord(Base):
    """One row per request that reached an engine; the primary key makes writes idempotent."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_created_at", "created_at"),
        # a workspace's or a key's newest requests in index order (the console's request log)
        Index("ix_usage_records_workspace_time", "workspace_id", "created_at"),
        Index("ix_usage_records_key_time", "api_key_id", "created_at"),
    )

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_request_id: Mapped[str | None] = mapped_column(String(128), default=None)
    api_key_id: Mapped[str | None] = mapped_column(String(40))
    workspace_id: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(64), default=None)
    replica: Mapped[str | None] = mapped_column(String(128), default=None)
    endpoint: Mapped[str] = mapped_column(String(64), default="chat.completions")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    price_id: Mapped[int | None] = mapped_column(Integer, default=None)
    ttft_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    total_ms: Mapped[int] = mapped_column(Integer, default=0)
    last_token_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    status: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    batch_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    custom_id: Mapped[str | None] = mapped_column(String(512), default=None)


TTFT_BOUNDS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)
"""Upper bounds (inclusive) of the TTFT histogram's buckets in ``usage_rollups``:
``ttft_b0`` counts TTFT <= 50 ms, ``ttft_b<i>`` (bound[i-1], bound[i]], the last one above
10 s. Fixed: changing them needs a migration and a rebuild."""

ROLLUP_DIMENSIONS = (
    "granularity",
    "bucket_start",
    "workspace_id",
    "api_key_id",
    "model",
    "region",
    "currency",
    "batch",
    "status_class",
)
WORKSPACE_ROLLUP_DIMENSIONS = tuple(d for d in ROLLUP_DIMENSIONS if d != "api_key_id")
TTFT_BUCKET_COLUMNS = tuple(f"ttft_b{i}" for i in range(len(TTFT_BOUNDS_MS) + 1))
ROLLUP_MEASURES = (
    "requests",
    "errors",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost_micros",
    "ttft_sum_ms",
    "ttft_count",
    *TTFT_BUCKET_COLUMNS,
)
_DIMENSION_TYPES: dict[str, TypeEngine[Any]] = {
    "granularity": String(6),  # minute | hour | day
    "bucket_start": DateTime(timezone=True),
    # '' where the ledger row has NULL (a primary key column cannot be NULL)
    "workspace_id": String(40),
    "api_key_id": String(40),
    "model": String(200),
    "region": String(64),
    "currency": String(3),
    "batch": SmallInteger(),  # 1: batch lines
    "status_class": SmallInteger(),  # status // 100
}


def _rollup_table(name: str, dimensions: tuple[str, ...], *indexes: Index) -> Table:
    return Table(
        name,
        Base.metadata,
        *(Column(d, _DIMENSION_TYPES[d], nullable=False) for d in dimensions),
        *(Column(m, BigInteger, nullable=False) for m in ROLLUP_MEASURES),
        PrimaryKeyConstraint(*dimensions),
        *indexes,
        sqlite_with_rowid=False,  # rows stored in primary-key order: a time range is one scan
    )


usage_rollups = _rollup_table(
    "usage_rollups",
    ROLLUP_DIMENSIONS,
    Index("ix_usage_rollups_workspace", "workspace_id", "granularity", "bucket_start"),
    Index("ix_usage_rollups_api_key", "api_key_id", "granularity", "bucket_start"),
)
"""The usage ledger summed per (granularity, bucket, workspace, key, model, region, currency,
batch or not, status class), maintained in the transaction of every ledger insert
(``storage.rollups``): per-key reads (a key's usage, the usage table, totals by key)."""

workspace_rollups = _rollup_table(
    "usage_workspace_rollups",
    WORKSPACE_ROLLUP_DIMENSIONS,
    Index("ix_usage_workspace_rollups_workspace", "workspace_id", "granularity", "bucket_start"),
)
"""The same sums without the key (a workspace's keys added together): what the overview,
invoices and budgets read, several times fewer rows than ``usage_rollups``."""


class AuditEntry(Base):
    """Who changed what, when (every admin change, from the API or the CLI)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The workspace the change concerns (None: none, e.g. a price): a tenant's audit page
    # reads its workspace's entries newest first through ``ix_audit_log_workspace_id_id``.
    workspace_id: Mapped[str | None] = mapped_column(String(40), default=None)


class ConsoleSession(Base):
    """A signed-in web-console session (``console.sessions``): the SHA-256 of its random id
    (only the browser's cookie holds the id itself), the key it signed in with, when it began,
    when it ends, and when it was last seen (updated at most once a minute)."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ControlState(Base):
    """One row per kind of control-plane change (``principals``, ``prices``, ``topology``):
    a counter every change bumps in its own transaction, which every gateway follows
    (``storage.control_state``); the ``topology`` row also holds the shared topology document
    (TOML) when the topology lives in the database."""

    __tablename__ = "control_state"

    topic: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    document: Mapped[str | None] = mapped_column(Text, default=None)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StoredFile(Base):
    """A file a workspace uploaded (``purpose`` ``batch``) or a batch wrote (``batch_output``);
    its bytes live in the file store (``storage.filestore``), under ``path``, in ``region``."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    region: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(512))
    bytes: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    path: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Batch(Base):
    """A batch job: its input file's lines run through ``endpoint`` at the batch price.

    ``lease_owner`` / ``lease_until``: the gateway running it (one at a time, renewed while it
    runs; an expired lease lets another gateway resume it)."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    api_key_id: Mapped[str] = mapped_column(String(40))
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(40))
    output_file_id: Mapped[str | None] = mapped_column(String(40), default=None)
    error_file_id: Mapped[str | None] = mapped_column(String(40), default=None)
    status: Mapped[str] = mapped_column(String(16), index=True)
    completion_window: Mapped[str] = mapped_column(String(8), default="24h")
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, default=None)
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    in_progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finalizing_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    cancelling_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class BatchResult(Base):
    """One finished line of a batch (its output or error line), written in the transaction
    that writes its ledger row: a line is answered and billed once, or not at all."""

    __tablename__ = "batch_results"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    custom_id: Mapped[str] = mapped_column(String(512))
    ok: Mapped[bool] = mapped_column(default=True)
    output: Mapped[str] = mapped_column(Text)  # the output or error file's JSON line


class StoredResponse(Base):
    """A Responses API response kept for ``GET``, ``input_items`` and ``previous_response_id``
    (``store: true``): the response object as returned, the input items of its own turn (the
    earlier turns' live in the rows ``previous_response_id`` leads to), where it is stored
    (``region``) and the replica that ran it (so the next turn of the chain can reuse its
    prefix cache)."""

    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    api_key_id: Mapped[str] = mapped_column(String(40))
    region: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    previous_response_id: Mapped[str | None] = mapped_column(String(64), default=None)
    replica_id: Mapped[str | None] = mapped_column(String(200), default=None)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    input_items: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KnowledgeBase(Base):
    """A workspace's knowledge base: its documents' chunks, embedded by ``embedding_model``,
    chunked at ``chunk_tokens`` with ``chunk_overlap`` (``knowledge.chunking``); stored in
    ``region`` (the gateway's, where its index lives)."""

    __tablename__ = "knowledge_bases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    region: Mapped[str] = mapped_column(String(64))
    embedding_model: Mapped[str] = mapped_column(String(200))
    chunk_tokens: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # OpenAI's vector stores are knowledge bases of ``kind`` ``vector_store``
    # (``control.vector_stores``): their metadata and expiry policy
    # (``expires_after_days`` after ``last_active_at``; ``expired_at``: the sweep deleted
    # its documents).
    kind: Mapped[str] = mapped_column(
        String(16), default="knowledge_base", server_default="knowledge_base"
    )
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, default=None)
    expires_after_days: Mapped[int | None] = mapped_column(Integer, default=None)
    last_active_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class KnowledgeDocument(Base):
    """A document of a knowledge base: its extracted ``sections`` (heading, text) wait here
    until the indexer has chunked and embedded them (``status`` pending → indexing → ready
    or failed with ``error``); ``api_key_id`` is the key the indexing is billed to.
    ``lease_owner`` / ``lease_until``: the gateway indexing it."""

    __tablename__ = "knowledge_documents"
    __table_args__ = (Index("ix_knowledge_documents_status", "status"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    knowledge_base_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id"), index=True)
    api_key_id: Mapped[str] = mapped_column(String(40))
    filename: Mapped[str] = mapped_column(String(512))
    format: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    sections: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # A vector store's file (``control.vector_store_files``): the uploaded file it came
    # from, its ``attributes`` (filterable in searches; a knowledge base's document: its
    # ``metadata``), its file batch, its own chunking
    # (``None``: the knowledge base's) and the code of its ``error``.
    file_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    batch_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    chunk_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    chunk_overlap: Mapped[int | None] = mapped_column(Integer, default=None)
    error_code: Mapped[str | None] = mapped_column(String(32), default=None)
    # A knowledge base's document: its ``tags`` (``protocol.document_labels``; its metadata
    # is ``attributes``), which DashScope's ``rag_options.tags`` filters by.
    tags: Mapped[list[str] | None] = mapped_column(JSON, default=None)


class VectorStoreFileBatch(Base):
    """A batch of files added to a vector store at once (OpenAI's ``file_batches``); its
    files are the knowledge documents with its ``id`` as ``batch_id``, its counts and status
    read from them (``cancelled_at``: cancelled)."""

    __tablename__ = "vector_store_file_batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    knowledge_base_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class KnowledgeChunk(Base):
    """One chunk of a document. Its integer ``id`` is the row id of its entries in the
    vector and full-text indexes (``knowledge.sqlite_index``, ``knowledge.pg_index``), which
    the index creates on first use, one vector table per embedding dimension."""

    __tablename__ = "knowledge_chunks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    knowledge_base_id: Mapped[str] = mapped_column(String(40), index=True)
    document_id: Mapped[str] = mapped_column(String(40), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str] = mapped_column(String(1000), default="")
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)


class App(Base):
    """An assistant (Model Studio's "application") of a workspace: a generation ``model``,
    its ``instructions`` (the system prompt), the knowledge bases it retrieves from and how
    (``top_k`` chunks, ``retrieval_mode``, ``query_rewrite``, ``rerank``), and its default ``max_tokens`` (``None``: the
    model's)."""

    __tablename__ = "apps"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    model: Mapped[str] = mapped_column(String(200))
    instructions: Mapped[str] = mapped_column(Text, default="")
    knowledge_base_ids: Mapped[list[Any]] = mapped_column(JSON)
    top_k: Mapped[int] = mapped_column(Integer)
    retrieval_mode: Mapped[str] = mapped_column(String(16))
    # how the retrieval query is made from the conversation: "concat" | "model"
    query_rewrite: Mapped[str] = mapped_column(String(16), server_default="concat")
    # whether the model re-ranks the retrieved chunks before the prompt (``serving.rerank``)
    rerank: Mapped[bool] = mapped_column(server_default=false())
    # how a memory's facts are taken from a user turn: "rules" | "model"
    memory_extraction: Mapped[str] = mapped_column(String(16), server_default="rules")
    max_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    # the plugins its model may call (``protocol.app_tools.AppTool`` objects, header values
    # included: write-only, never returned), "auto" | "required", and the rounds of calls
    tools: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True, default=None)
    tool_choice: Mapped[str] = mapped_column(String(16), server_default="auto")
    max_tool_rounds: Mapped[int] = mapped_column(Integer, server_default="4")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AppSession(Base):
    """One end user's conversation with an app (DashScope's ``session_id``)."""

    __tablename__ = "app_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)  # expiry


class AppTurn(Base):
    """One exchange of a session: the user's text and the app's answer (append-only, so two
    requests on one session never overwrite each other's turn)."""

    __tablename__ = "app_turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("app_sessions.id"), index=True)
    workspace_id: Mapped[str] = mapped_column(String(40))
    user_text: Mapped[str] = mapped_column(Text)
    assistant_text: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AppMemory(Base):
    """One long-term fact of an end user's memory (DashScope's ``memory_id``), of a workspace:
    recalled into the prompts of later calls that name the same ``memory_id``."""

    __tablename__ = "app_memories"
    __table_args__ = (Index("ix_app_memories_workspace_id_memory_id", "workspace_id", "memory_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    memory_id: Mapped[str] = mapped_column(String(64))
    fact: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


__all__ = [
    "ROLLUP_DIMENSIONS",
    "ROLLUP_MEASURES",
    "TTFT_BOUNDS_MS",
    "TTFT_BUCKET_COLUMNS",
    "WORKSPACE_ROLLUP_DIMENSIONS",
    "ApiKey",
    "App",
    "AppMemory",
    "AppSession",
    "AppTurn",
    "AuditEntry",
    "Base",
    "Batch",
    "BatchResult",
    "ConsoleSession",
    "ControlState",
    "KnowledgeBase",
    "KnowledgeChunk",
    "KnowledgeDocument",
    "LimitsMixin",
    "Price",
    "StoredFile",
    "StoredResponse",
    "UsageRecord",
    "VectorStoreFileBatch",
    "Workspace",
    "usage_rollups",
    "workspace_rollups",
]
