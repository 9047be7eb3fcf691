"""Settings: the ONLY module that reads the environment.

One ``Settings`` tree, environment prefix ``MODELGRID_`` and nested delimiter ``__``
(``MODELGRID_DATABASE__URL``, ``MODELGRID_ENGINE__N_THREADS``). Defaults run embedded: a SQLite
file and the packaged Qwen model in the data directory, served on 127.0.0.1:8000.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "modelgrid"


class ServerSettings(BaseModel):
    """``max_body_bytes``: larger request bodies are refused with 413 before they are read
    whole (8 MiB: far beyond any prompt the served context windows can hold).
    ``otel_telemetry``: FastAPI's OpenTelemetry spans, metrics and logs for every HTTP request
    (https://fastapi.tiangolo.com, "Telemetry"; exported by the OpenTelemetry providers the
    deployment configures). Off by default: modelgrid's own metrics are Prometheus
    (``/metrics``), and FastAPI's per-request provider checks alone cost about 6 % of a
    gateway request's CPU (``bench/RESULTS.md``, gateway_overhead).
    ``workers``: gateway processes serving one port (``modelgrid serve --workers N``; uvicorn's
    workers). Above 1 each answer names its process in ``x-modelgrid-worker`` (its pid), and
    the gateway runs no embedded model (``docs/gateways.md``, "Several workers")."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1, le=256)
    log_level: str = "info"
    max_body_bytes: int = 8 * 1024 * 1024
    otel_telemetry: bool = False


class ObservabilitySettings(BaseModel):
    """Metrics and traces (``docs/observability.md``).

    ``workspace_label``: vLLM-named series (``serving.vllm_metrics``) also labelled with the
    caller's workspace id (one series per workspace and model: for deployments with a few
    workspaces). ``otlp_endpoint``: an OTLP/HTTP collector's base URL
    (``http://127.0.0.1:4318``): spans and GenAI metrics go there (``serving.telemetry``;
    needs the ``otel`` extra); empty (the default): OpenTelemetry is off and costs nothing.
    ``service_name``: the resource's ``service.name``; ``provider_name``: the spans'
    ``gen_ai.provider.name``; ``otlp_metrics_interval_s``: how often metrics are exported."""

    workspace_label: bool = False
    otlp_endpoint: str = ""
    service_name: str = "modelgrid"
    provider_name: str = "modelgrid"
    otlp_metrics_interval_s: float = 15.0


class DatabaseSettings(BaseModel):
    """``url`` empty means the SQLite file ``<data_dir>/modelgrid.db``."""

    url: SecretStr = SecretStr("")
    echo: bool = False


class EngineSettings(BaseModel):
    """llama.cpp engine knobs for the embedded models.

    Attributes:
        n_threads: CPU threads for decode (0 = all cores).
        n_ctx: Context window in tokens.
        n_batch: Prompt-processing batch size in tokens.
        models: Model ids to load at start-up (``qwen2.5-coder-0.5b-instruct`` by default).
        embedding_models: Packaged embedding models served beside them (``/v1/embeddings``),
            loaded at start-up when their pip extra ``embeddings`` is installed.
        embedding_batch_size: Inputs per forward pass of an embedding model.
        embedding_threads: PyTorch threads for the embedding models (0 = torch's default, one
            per core; fewer leaves cores to llama.cpp when both are busy).
        isolation: ``process`` (default): each llama.cpp model runs in its own supervised
            ``modelgrid engine`` process, so a native crash, an OOM kill or a hang never takes
            the gateway down (``engines.process``); ``in_process``: inside the gateway (no
            such protection; for debugging).
        restart_wait_s: Longest a request waits for a restarting engine process before a 503.
        hang_timeout_s: No token for this long while requests wait: the engine process is
            killed and restarted.
        ready_timeout_s: Longest an engine process may take to load its model.
    """

    n_threads: int = 0
    n_ctx: int = 4096
    n_batch: int = 512
    models: list[str] = Field(default_factory=lambda: ["qwen2.5-coder-0.5b-instruct"])
    embedding_models: list[str] = Field(default_factory=lambda: ["all-minilm-l6-v2"])
    embedding_batch_size: int = 64
    embedding_threads: int = 0
    isolation: Literal["process", "in_process"] = "process"
    restart_wait_s: float = 15.0
    hang_timeout_s: float = 60.0
    ready_timeout_s: float = 600.0


class MeteringSettings(BaseModel):
    """Usage writes are batched: flushed every ``flush_interval_s`` or at ``batch_size`` rows.

    ``spool``: append each record to ``<data_dir>/spool`` before the response ends, so a
    killed process loses none (replayed at the next start); ``fsync`` also survives power loss.
    ``prices_refresh_s``: how often the price book snapshot is reloaded from the database
    anyway (a price change reloads it at once on every gateway: ``control``).
    """

    flush_interval_s: float = 0.5
    batch_size: int = 256
    spool: bool = True
    fsync: bool = False
    prices_refresh_s: float = 10.0


class AuthSettings(BaseModel):
    """``cache_ttl_s``: how long an authenticated key is trusted without reading the database
    (0 disables the cache). Changes made on this machine (API, CLI) apply at once through the
    epoch file ``<data_dir>/auth.epoch``; gateways on other machines when they see the change
    counter move (``control``: within a second), at the latest within this time. Keys in
    use are re-read in the background every ``cache_ttl_s / 2`` (one query for all), so
    their requests never wait for the database (``tenancy.authcache``)."""

    cache_ttl_s: float = 2.0


class RateLimitSettings(BaseModel):
    """``backend``: ``memory`` (one process, the embedded default) or ``redis`` (shared by
    every gateway process that uses the same Redis)."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")


class ControlSettings(BaseModel):
    """How the control plane is shared by several gateways (``docs/gateways.md``).

    ``topology_store``: ``file`` (default: the topology file, followed by every process on
    the machine) or ``database`` (one topology document in the database for every gateway
    that shares it, seeded from the file, or the embedded default, by the first gateway).
    ``poll_interval_s``: how often a gateway reads the change counters of the database
    (keys, workspaces, prices, topology); on PostgreSQL a ``LISTEN`` connection wakes it at
    once as well, so the poll is only the safety net. ``listen``: off behind a pooler that
    drops ``LISTEN`` (PgBouncer in transaction mode). ``redis_wakeup``: where no ``LISTEN``
    wakes the gateways (SQLite, or ``listen`` off) and they share the limiter's Redis
    (``ratelimit.backend = "redis"``), each change is also published on Redis after its
    commit and wakes every gateway at once (``control.redis_feed``).
    """

    topology_store: Literal["file", "database"] = "file"
    poll_interval_s: float = Field(default=0.5, gt=0)
    listen: bool = True
    redis_wakeup: bool = True


class UpstreamSettings(BaseModel):
    """A model served by an OpenAI-compatible endpoint (``engines.upstream.UpstreamEngine``).

    Attributes:
        model: The id clients call.
        base_url: The upstream's API root, e.g. ``http://127.0.0.1:18080/v1``.
        upstream_model: The name the upstream knows it by (default: ``model``).
        api_key: Sent to the upstream as a bearer token (empty: none).
        connect_timeout_s: Limit for opening a connection.
        read_timeout_s: Longest silence while waiting for the response or between chunks; a
            non-streamed request is a plain call, so its whole answer must come within it.
        pool_timeout_s: Longest wait for a pooled connection, opening included.
        max_connections: Connection pool size for this upstream.
        keepalive_s: Idle time after which a pooled connection is closed (keep it below the
            upstream's own keep-alive, 5 s for uvicorn-based servers).
        context_length: Window shown in ``/v1/models`` (None: asked from the upstream).
        owned_by: ``owned_by`` shown in ``/v1/models``.
    """

    model: str
    base_url: str
    upstream_model: str | None = None
    api_key: SecretStr | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0
    pool_timeout_s: float = 30.0
    max_connections: int = 512
    keepalive_s: float = 4.0
    context_length: int | None = None
    owned_by: str = "upstream"


def _indexed_list(value: Any) -> Any:
    """``{"0": {...}, "1": {...}}`` (from ``MODELGRID_UPSTREAMS__0__MODEL=…``) as a list."""
    if isinstance(value, dict) and all(str(k).isdigit() for k in value):
        return [value[k] for k in sorted(value, key=lambda k: int(k))]
    return value


class RoutingSettings(BaseModel):
    """How requests are spread over regions and replicas (``modelgrid.routing``).

    Attributes:
        policy: Replica choice within a region: ``cache_aware`` (prompt-prefix affinity,
            else power of two choices), ``p2c``, or ``round_robin``.
        max_attempts: Replicas tried per request when attempts fail before the first byte.
        max_imbalance: In-flight requests a prefix owner may have beyond the least-loaded
            replica and still get the request.
        block_chars / max_prefix_chars: Prefix fingerprint: block size and reach, in
            characters of the prompt.
        prefix_entries: Prefix blocks remembered (LRU).
        latency: Region latency source: ``configured`` (the topology's matrix, distance as
            fallback) or ``measured`` (probe round trips).
        failure_threshold: Consecutive failures that open a replica's circuit breaker.
        cooldown_s: Time an open breaker waits before a trial (doubles on each failed trial,
            up to ``max_cooldown_s``).
        probe_interval_s / probe_timeout_s: Active health checks of upstream replicas; a
            successful one closes an open breaker, so a replica that is back takes traffic
            within ``probe_interval_s``.
    """

    policy: Literal["cache_aware", "p2c", "round_robin"] = "cache_aware"
    max_attempts: int = 4
    max_imbalance: int = 2
    block_chars: int = 256
    max_prefix_chars: int = 4096
    prefix_entries: int = 65536
    latency: Literal["configured", "measured"] = "configured"
    failure_threshold: int = 3
    cooldown_s: float = 5.0
    max_cooldown_s: float = 60.0
    probe_interval_s: float = 0.5
    probe_timeout_s: float = 2.0


class BatchSettings(BaseModel):
    """Files and batch jobs (``/v1/files``, ``/v1/batches``).

    Attributes:
        storage_quota_bytes: Bytes of files a workspace may keep (uploads and outputs).
        file_ttl_s: Lifetime of an uploaded file unless its upload says otherwise.
        output_ttl_s: Lifetime of a batch's output and error files (30 days).
        max_file_bytes / max_lines / max_line_bytes: Limits of an input file (Model
            Studio's: 500 MB, 50,000 lines, 6 MB a line).
        concurrency: Lines of one model running at once, when online traffic leaves room.
        poll_interval_s: How often the runner looks for work and renews its leases.
        lease_s: How long a gateway holds a batch without renewing (then another resumes it).
        files_dir: Where files' bytes are kept (default ``<data_dir>/files``); gateways that
            share a database and run each other's batches share this folder too (a network
            file system).
    """

    storage_quota_bytes: int = Field(default=10 * 1024**3, ge=0)
    file_ttl_s: int = Field(default=30 * 86400, ge=3600)
    output_ttl_s: int = Field(default=30 * 86400, ge=3600)
    max_file_bytes: int = Field(default=500 * 1024**2, ge=1)
    max_lines: int = Field(default=50_000, ge=1)
    max_line_bytes: int = Field(default=6 * 1024**2, ge=1)
    concurrency: int = Field(default=4, ge=1, le=1024)
    poll_interval_s: float = Field(default=0.5, gt=0)
    lease_s: float = Field(default=30.0, gt=0)
    files_dir: Path | None = None


class KnowledgeSettings(BaseModel):
    """Knowledge bases (``/v1/knowledge_bases``, ``docs/knowledge.md``).

    Attributes:
        max_document_bytes: Largest document accepted (a larger one is a 413).
        max_document_chunks: Most chunks one document may give (more is a failed document).
        chunk_tokens / chunk_overlap: A new knowledge base's default window and overlap, in
            the embedding model's tokens (cut to what the model reads).
        embedding_model: A new knowledge base's default model (``None``: the first served
            embedding model).
        embed_batch: Chunks per metered embedding call while indexing.
        poll_interval_s: How often the indexer looks for pending documents.
        indexing_concurrency: Documents one gateway indexes at once (their embedding calls
            interleave on the replicas); a free slot goes to the oldest document of a
            workspace with none being indexed, so one large document never holds up the
            others' (``jobs.indexer``).
        lease_s: How long a gateway holds a document it indexes without renewing.
        ann_min_chunks: A knowledge base with at least this many chunks gets an in-process
            IVF index for dense search (``knowledge.ann``); smaller ones keep the exact scan.
        ann_max_vectors: Most vectors the gateway holds in ANN indexes (~1.5 kB each at 384
            dimensions); the least recently searched index is evicted beyond.
        ann_nprobe: IVF lists a query scans, of sqrt(chunks) (recall vs latency; recall@50
            0.99 at 32 on the bench's 100k set: bench/RESULTS.md, #13).
        lexical_min_chunks: A knowledge base with at least this many chunks gets in-process
            BM25 postings (``knowledge.lexical``, on SQLite and PostgreSQL); smaller ones keep
            the store's ranking: FTS5's MATCH scored from the knowledge base's statistics
            tables, or PostgreSQL's ``pg_bm25.rank_sql``.
        lexical_max_chunks: Most chunks the gateway holds in BM25 postings (~1.4 kB each for
            a 120-word chunk; a budget beside ``ann_max_vectors``); LRU eviction beyond.
        pgvector: On PostgreSQL, search vectors in the server with pgvector where the server
            has the extension (``scripts/pgvector.sh``; ``knowledge.pg_vector``); ``False``:
            the ``bytea`` vectors read into the process, as without it.
        pgvector_hnsw_min_chunks: With pgvector, where the process's IVF index does not
            answer (cold, over its cap, a documents filter), a knowledge base (or filter) of
            at least this many chunks is searched through the HNSW index of its embedding
            width; smaller ones by an exact scan in the server (91 ms p50 at 100k chunks on
            the bench; HNSW 6 ms at recall@50 0.85 there: bench/RESULTS.md).
        pgvector_ef_search: pgvector's ``hnsw.ef_search`` (at least the ``k`` asked for;
            recall@50 on the bench's 100k set 0.70 at 100, 0.85 at 400).
        fusion: How hybrid retrieval fuses the dense and BM25 rankings (``knowledge.fusion``):
            ``convex``, min-max normalised scores with 0.4 on dense (chosen on held-out
            questions: recall@5 0.897), or ``rrf``, reciprocal rank fusion with k = 60
            (0.888; Cormack, Clarke and Büttcher, SIGIR 2009).
    """

    max_document_bytes: int = Field(default=20 * 1024**2, ge=1)
    max_document_chunks: int = Field(default=20_000, ge=1)
    chunk_tokens: int = Field(default=800, ge=16)
    chunk_overlap: int = Field(default=400, ge=0)
    embedding_model: str | None = None
    embed_batch: int = Field(default=64, ge=1, le=2048)
    poll_interval_s: float = Field(default=1.0, gt=0)
    indexing_concurrency: int = Field(default=2, ge=1, le=16)
    lease_s: float = Field(default=60.0, gt=0)
    ann_min_chunks: int = Field(default=20_000, ge=1)
    ann_max_vectors: int = Field(default=2_000_000, ge=1)
    ann_nprobe: int = Field(default=32, ge=1, le=65_536)
    lexical_min_chunks: int = Field(default=1_000, ge=1)
    lexical_max_chunks: int = Field(default=2_000_000, ge=1)
    pgvector: bool = True
    pgvector_hnsw_min_chunks: int = Field(default=100_000, ge=1)
    pgvector_ef_search: int = Field(default=400, ge=1, le=1000)
    fusion: Literal["convex", "rrf"] = "convex"


class AppsSettings(BaseModel):
    """Apps (DashScope's Application API, ``docs/applications.md``).

    Attributes:
        session_ttl_s: How long an end user's session (``session_id``) lives after its last
            turn (default 1 hour; ``docs/applications.md`` on DashScope's figure); then
            a call naming it is the same 404 ``SessionNotFound`` as an unknown id, and a
            background sweep deletes it with its turns.
        sweep_interval_s: How often expired sessions are swept.
        plugin_allowed_networks: Networks (CIDRs) an app's plugins may be called in although
            the address rules refuse them (loopback, private, link-local…:
            ``serving.plugin_addresses``); empty by default. E.g.
            ``MODELGRID_APPS__PLUGIN_ALLOWED_NETWORKS='["10.20.0.0/16"]'`` for an internal
            API network.
    """

    session_ttl_s: int = Field(default=3600, ge=60, le=365 * 86400)
    sweep_interval_s: float = Field(default=60.0, gt=0)
    plugin_allowed_networks: list[IPvAnyNetwork] = Field(default_factory=list, max_length=256)


class ResponsesSettings(BaseModel):
    """Stored responses of the Responses API (``/v1/responses``).

    Attributes:
        ttl_s: How long a stored response (``store: true``) can be read and chained with
            ``previous_response_id`` (30 days, OpenAI's retention); then it is deleted.
        max_chain: The most responses a ``previous_response_id`` chain may reach back over
            (a longer chain is refused with a 400 naming the limit).
    """

    ttl_s: int = Field(default=30 * 86400, ge=60)
    max_chain: int = Field(default=1000, ge=1, le=100_000)


class ConsoleSettings(BaseModel):
    """The web console (``/console``).

    Attributes:
        session_ttl_s: How long a sign-in lasts (12 hours); then the browser signs in again.
            A revoked or expired key ends its sessions at their next page load anyway.
        sign_in_failures_per_minute: Failed sign-ins a client address may make in any
            minute; past them every attempt from it is refused (429) until the minute ends,
            so the sign-in page is no oracle for guessing keys.
    """

    session_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 86400)
    sign_in_failures_per_minute: int = Field(default=5, ge=1, le=1000)


class Settings(BaseSettings):
    """The effective configuration (``modelgrid config`` prints it, secrets masked)."""

    model_config = SettingsConfigDict(
        env_prefix="MODELGRID_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    # seals the secrets the database keeps (apps' plugin header values, ``storage.sealing``):
    # a Fernet key; unset, ``<data_dir>/secret.key`` (made on first use). Every process
    # sharing one database needs the same key.
    secret_key: SecretStr | None = None
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    metering: MeteringSettings = Field(default_factory=MeteringSettings)
    ratelimit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    bootstrap_keys: bool = True
    topology_file: Path | None = None
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    responses: ResponsesSettings = Field(default_factory=ResponsesSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    apps: AppsSettings = Field(default_factory=AppsSettings)
    upstreams: list[UpstreamSettings] = Field(default_factory=list)
    upstreams_file: Path | None = None
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)

    @field_validator("upstreams", mode="before")
    @classmethod
    def _upstreams_by_index(cls, value: Any) -> Any:
        return _indexed_list(value)

    def all_upstreams(self) -> list[UpstreamSettings]:
        """``upstreams`` followed by the ``[[upstreams]]`` tables of ``upstreams_file`` (TOML,
        read on each call).

        Raises:
            OSError / tomllib.TOMLDecodeError / pydantic.ValidationError: a bad file.
        """
        if self.upstreams_file is None:
            return list(self.upstreams)
        with self.upstreams_file.open("rb") as f:
            tables = tomllib.load(f).get("upstreams", [])
        return [*self.upstreams, *(UpstreamSettings(**t) for t in tables)]

    @property
    def database_url(self) -> str:
        url = self.database.url.get_secret_value()
        if url:
            return url
        return f"sqlite+aiosqlite:///{self.data_dir / 'modelgrid.db'}"

    @property
    def auth_epoch_path(self) -> Path:
        return self.data_dir / "auth.epoch"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def files_dir(self) -> Path:
        """Where the bytes of ``/v1/files`` files are kept (``storage.filestore``):
        ``batch.files_dir``, else ``<data_dir>/files``."""
        return self.batch.files_dir or self.data_dir / "files"

    @property
    def topology_path(self) -> Path:
        """The topology file: ``topology_file``, else ``<data_dir>/topology.toml`` (used if it
        exists; the admin API writes its changes there). Neither: the embedded default."""
        return self.topology_file or self.data_dir / "topology.toml"

    def masked(self) -> dict[str, Any]:
        """The settings as a JSON-able dict with secrets shown as ``**********``: secret
        fields, and in every URL the password and query parameters that carry credentials."""
        data = self.model_dump(mode="json")
        url = self.database.url.get_secret_value()
        data["database"]["url"] = url or f"(default) {self.database_url}"
        data["ratelimit"]["redis_url"] = self.ratelimit.redis_url.get_secret_value()
        return _mask_urls(data)  # type: ignore[no-any-return]


_MASK = "**********"
_SECRET_QUERY = re.compile(
    r"([?&](?:password|passwd|pwd|secret|token|api[_-]?key|key|access[_-]?key|auth)=)[^&#]*",
    re.IGNORECASE,
)


def _mask_url(url: str) -> str:
    """Hide the password of ``scheme://user:password@host/…`` and credential query values."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    if "@" in rest.split("/", 1)[0]:
        creds, host = rest.split("@", 1)
        user = creds.split(":", 1)[0]
        rest = f"{user}:{_MASK}@{host}" if ":" in creds else f"{user}@{host}"
    return _SECRET_QUERY.sub(rf"\1{_MASK}", f"{scheme}://{rest}")


def _mask_urls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_urls(v) for v in value]
    if isinstance(value, str):
        return _mask_url(value)
    return value


__all__ = [
    "AuthSettings",
    "ConsoleSettings",
    "DatabaseSettings",
    "EngineSettings",
    "MeteringSettings",
    "RateLimitSettings",
    "RoutingSettings",
    "ServerSettings",
    "Settings",
    "UpstreamSettings",
]
