"""Composition root: ``create_app(settings)`` builds the ASGI app; its lifespan builds ``AppState``.

Start-up order: migrate the database (embedded default), start the usage writer, then load
the models in the background so ``/health/live`` answers at once and ``/health/ready`` turns
ready when the weights are in memory. Shutdown flushes pending usage before closing engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import SpanKind

from modelgrid import __version__
from modelgrid.api import errors
from modelgrid.api.deps import provide_model_api
from modelgrid.api.middleware import RequestContext
from modelgrid.api.routers import (
    admin,
    anthropic,
    batches,
    completions,
    dashscope,
    embeddings,
    files,
    health,
    openai,
    tokenize,
    topology,
)
from modelgrid.api.routers import apps as apps_api
from modelgrid.api.routers import knowledge as knowledge_api
from modelgrid.api.routers import responses as responses_api
from modelgrid.api.routers import vector_stores as vector_stores_api
from modelgrid.api.state import AppState, Knowledge
from modelgrid.config import Settings
from modelgrid.console import create_console
from modelgrid.control import ControlPlane, Hooks, LiveTopology
from modelgrid.control.files import Files
from modelgrid.control.knowledge import KnowledgeBases
from modelgrid.control.redis_feed import RedisAnnouncer
from modelgrid.control.sync import ChangeFollower, follow_gateway, redis_wakeup_url
from modelgrid.control.topology import RELOAD_INTERVAL_S
from modelgrid.control.topology_db import DatabaseTopology, load_or_seed
from modelgrid.control.vector_store_files import VectorStoreFiles
from modelgrid.control.vector_stores import VectorStores
from modelgrid.core.errors import ServiceUnavailableError
from modelgrid.core.periodic import Periodic
from modelgrid.engines.base import Engine
from modelgrid.engines.embedding import EMBEDDINGS
from modelgrid.engines.process import EngineProcess
from modelgrid.engines.process_embedding import ProcessEmbeddingEngine
from modelgrid.engines.process_engine import ProcessEngine
from modelgrid.engines.registry import gateway_engines
from modelgrid.jobs.batch_runner import BatchRunner
from modelgrid.jobs.capacity import GridCapacity
from modelgrid.jobs.indexer import Indexer
from modelgrid.knowledge import fusion
from modelgrid.knowledge.ann import AnnCache, AnnSettings
from modelgrid.knowledge.index import KnowledgeIndex
from modelgrid.knowledge.lexical import LexicalCache, LexicalSettings
from modelgrid.knowledge.pg_index import PgIndex
from modelgrid.knowledge.pg_vector import PgVectorSettings
from modelgrid.knowledge.sqlite_index import SqliteIndex, sqlite_path
from modelgrid.routing import Grid, local_models
from modelgrid.routing import topology as topo
from modelgrid.routing.health import HealthBook
from modelgrid.serving.app_store import AppStore
from modelgrid.serving.apps import AppService
from modelgrid.serving.batch_lines import BatchLines, BatchMeter
from modelgrid.serving.chat import ChatService
from modelgrid.serving.completions import CompletionService
from modelgrid.serving.dashscope import TextGenerationService
from modelgrid.serving.embeddings import EmbeddingService
from modelgrid.serving.file_search import FileSearch
from modelgrid.serving.knowledge import IndexingMeter, KnowledgeEmbedder, Retrieval
from modelgrid.serving.messages import MessagesService
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.serving.plugin_http import PluginCaller
from modelgrid.serving.process_metrics import EngineProcessCollector
from modelgrid.serving.query_rewrite import default_chat_model
from modelgrid.serving.rerank import ChatReranker
from modelgrid.serving.response_store import ResponseStore
from modelgrid.serving.responses import ResponsesService
from modelgrid.serving.routing_metrics import RoutingCollector
from modelgrid.serving.telemetry import GenAiTelemetry, otlp_telemetry
from modelgrid.storage import db, migrate
from modelgrid.storage.filestore import FileStore
from modelgrid.storage.sealing import sealer_for
from modelgrid.tenancy.authcache import PrincipalCache
from modelgrid.tenancy.metering import UsageWriter
from modelgrid.tenancy.ratelimit_redis import RedisLimiter
from modelgrid.tenancy.service import TenancyService
from modelgrid.tenancy.spool import Spool

log = logging.getLogger("modelgrid")

RETENTION_S = 60.0
EXPIRY_SWEEP_S = 60.0  # how often expired vector stores are swept
EngineFactory = Callable[[Settings], Iterable[Engine]]


def create_app(
    settings: Settings | None = None,
    engine_factory: EngineFactory | None = None,
    *,
    genai: GenAiTelemetry | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        settings: Effective settings (defaults from the environment).
        engine_factory: Builds the engines to serve (default: ``engines.registry.gateway_engines``). Tests
            of the layers above engines, and benchmarks, pass a factory of ``FakeEngine``s
            (the scripted engine is no production setting).
        genai: OpenTelemetry GenAI instruments to use (tests: over in-memory exporters);
            default: over OTLP when ``observability.otlp_endpoint`` is set, else none.
    """
    settings = settings or Settings()
    factory = engine_factory or gateway_engines
    obs = settings.observability
    built_genai = None
    if genai is None and obs.otlp_endpoint:
        genai = built_genai = otlp_telemetry(obs, span_kind=SpanKind.CLIENT)
    metrics = Metrics(workspace_label=obs.workspace_label, genai=genai)
    live: list[Grid] = []  # the running grid, for the routing series of ``/metrics``
    metrics.registry.register(RoutingCollector(lambda: live[0].router if live else None))
    processes: dict[str, EngineProcess] = {}  # model id -> its engine process (``/metrics``)
    metrics.registry.register(EngineProcessCollector(lambda: processes))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.database_url
        await asyncio.to_thread(migrate.upgrade, url)
        engine = db.create_engine(url, echo=settings.database.echo)
        wake_url = redis_wakeup_url(settings)  # Redis wakes the gateways where LISTEN can't
        announcer = RedisAnnouncer(wake_url) if wake_url else None
        sessions = db.sessionmaker(engine, announce=announcer)
        changes = ChangeFollower.of(settings.control, sessions, url, redis_url=wake_url)
        await changes.open()  # the baseline, before the state it refreshes is loaded
        usage, tenancy = await _build_tenancy(settings, sessions)
        refresher = _refresher(tenancy, settings)
        refresher.start()
        models = ModelRegistry()
        shared = settings.control.topology_store == "database"
        version, stored = await load_or_seed(sessions, _topology(settings)) if shared else (0, None)
        grid = _build_grid(settings, stored)
        live[:] = [grid]
        on_applied = lambda: models.sync_routed(grid.engines())  # noqa: E731
        store = (
            DatabaseTopology(grid, sessions, version, on_applied)
            if shared
            else LiveTopology(grid, settings.topology_path, on_applied)
        )
        follow_gateway(changes, tenancy, store if shared else None)
        file_store = FileStore(settings.files_dir)
        sealer = sealer_for(settings)
        control = ControlPlane(
            sessions,
            store,
            served_models=lambda: [c.model_id for c in models.cards()],
            embedding_models=lambda: [
                c.model_id
                for c in models.cards()
                if EMBEDDINGS in c.capabilities and "chat" not in c.capabilities
            ],
            hooks=Hooks(tenancy.invalidate_auth, tenancy.reload_prices, lambda: runner.wake()),
            files=file_store,
            plugin_allowed_networks=settings.apps.plugin_allowed_networks,
            batch=settings.batch,
            sealer=sealer,
        )
        responses = ResponsesService(
            models,
            tenancy,
            metrics,
            ResponseStore(sessions, settings.responses, _home(grid)),
            lambda: _file_search(app),
        )
        batch_meter = BatchMeter(tenancy)
        batch_lines = BatchLines(
            ChatService(models, batch_meter, metrics),
            CompletionService(models, batch_meter, metrics),
            EmbeddingService(models, batch_meter, metrics),
            batch_meter,
        )
        runner = BatchRunner(
            sessions,
            file_store,
            control.files,
            batch_lines,
            tenancy.principal_of_key,
            GridCapacity(grid),
            settings.batch,
            region=grid.topology.gateway_region,
        )
        grid.router.on_begin.append(lambda placement: runner.attempt_started(placement.model))
        state = AppState(
            settings=settings,
            db=engine,
            sessions=sessions,
            usage=usage,
            tenancy=tenancy,
            models=models,
            metrics=metrics,
            chat=ChatService(models, tenancy, metrics),
            completions=CompletionService(models, tenancy, metrics),
            text_generation=TextGenerationService(models, tenancy, metrics),
            messages=MessagesService(models, tenancy, metrics),
            embeddings=EmbeddingService(models, tenancy, metrics),
            responses=responses,
            control=control,
            batches=control.batches,
            batch_runner=runner,
            grid=grid,
            processes=processes,
        )
        app.state.modelgrid = state
        provide_model_api(app, state)  # the routers the engine worker shares
        knowledge = _build_knowledge(settings, state)
        ttl_s = settings.apps.session_ttl_s
        state.apps = apps_service = AppService(
            models,
            tenancy,
            metrics,
            AppStore(sessions, _home(grid), sealer, ttl_s),
            lambda: _retrieval(state),
            PluginCaller(metrics, settings.apps.plugin_allowed_networks),
        )
        # app sessions idle for ``apps.session_ttl_s`` deleted with their turns
        session_expiry = Periodic(
            "app-session-expiry",
            settings.apps.sweep_interval_s,
            lambda: control.apps.sweep_expired_sessions(ttl_s),
        )
        session_expiry.start()
        loader = asyncio.create_task(_load_models(state, factory), name="load-models")
        changes.start()
        follower = Periodic("topology-file", RELOAD_INTERVAL_S, store.reload_if_changed)
        follower.start()
        batching = asyncio.create_task(runner.run_forever(), name="batch-runner")
        retention = _retention(control.files, responses.store)
        retention.start()
        try:
            yield
        finally:
            await apps_service.aclose()  # memory extractions in flight, while usage is written
            if knowledge is not None:  # the indexer stops between steps, never inside one
                await knowledge.stop()
            await changes.stop()  # after the round in progress
            # Database loops stop between rounds, never inside one (``core.periodic``).
            loader.cancel()
            await asyncio.gather(
                refresher.stop(),
                follower.stop(),
                retention.stop(),
                session_expiry.stop(),
                runner.aclose(),
            )
            with contextlib.suppress(TimeoutError):  # its loop ends after the round it is in
                await asyncio.wait_for(asyncio.shield(batching), 30)
            batching.cancel()
            await asyncio.gather(loader, batching, return_exceptions=True)
            await usage.aclose()
            await tenancy.aclose()
            await grid.aclose()
            for e in [*models.engines(), *grid.local.values()]:
                await e.aclose()
            await engine.dispose()
            if announcer is not None:
                announcer.close()
            if built_genai is not None:
                await asyncio.to_thread(built_genai.shutdown)  # export what is pending

    on = settings.server.otel_telemetry
    app = FastAPI(
        title="modelgrid",
        version=__version__,
        lifespan=lifespan,
        telemetry={"tracing": on, "metrics": on, "logs": on},
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(openai.router)
    app.include_router(completions.router)
    app.include_router(embeddings.router)
    app.include_router(openai.router, prefix="/compatible-mode")  # DashScope's OpenAI mode
    app.include_router(completions.router, prefix="/compatible-mode")
    app.include_router(embeddings.router, prefix="/compatible-mode")
    app.include_router(dashscope.router)
    app.include_router(anthropic.router)
    app.include_router(tokenize.router)
    app.include_router(batches.router)
    app.include_router(batches.router, prefix="/compatible-mode")
    app.include_router(admin.router)
    app.include_router(topology.router)
    app.include_router(files.router)
    app.include_router(files.router, prefix="/compatible-mode")
    app.include_router(responses_api.router)
    app.include_router(responses_api.router, prefix="/compatible-mode")
    app.include_router(knowledge_api.router)
    app.include_router(vector_stores_api.router)
    app.include_router(apps_api.router)
    app.mount("/console", create_console(lambda: app.state.modelgrid, settings.console))
    app.add_middleware(
        RequestContext,
        metrics=metrics,
        max_body_bytes=settings.server.max_body_bytes,
        body_limits=files.upload_body_limits(settings.batch),
        worker_id=str(os.getpid()) if settings.server.workers > 1 else None,
    )
    return app


def app_from_environment() -> FastAPI:
    """The gateway of the environment's settings: what each of ``modelgrid serve --workers N``'s
    worker processes imports (uvicorn's ``factory``), after the parent migrated the database."""
    return create_app(Settings())


async def _build_tenancy(settings: Settings, sessions: Any) -> tuple[UsageWriter, TenancyService]:
    """The usage writer (with its crash spool, after replaying dead processes' spools), the
    rate limiter of the configured backend, and the tenancy service with the price book."""
    m = settings.metering
    spool = Spool(settings.data_dir / "spool", fsync=m.fsync) if m.spool else None
    usage = UsageWriter(
        sessions, flush_interval_s=m.flush_interval_s, batch_size=m.batch_size, spool=spool
    )
    await usage.recover()
    usage.start()
    tenancy = TenancyService(
        sessions,
        usage,
        auth_cache=PrincipalCache(settings.auth.cache_ttl_s, settings.auth_epoch_path),
    )
    if settings.ratelimit.backend == "redis":
        tenancy.limiter = RedisLimiter.from_url(
            settings.ratelimit.redis_url.get_secret_value(), seed=tenancy.month_spend
        )
    await tenancy.reload_prices()
    return usage, tenancy


def _refresher(tenancy: TenancyService, settings: Settings) -> Periodic:
    """Reload the price book, and refresh the cached principals in use (refresh-ahead,
    ``tenancy.authcache``), each on its own period."""
    ttl = settings.auth.cache_ttl_s
    principals_every = ttl / 2 if ttl > 0 else None
    prices_every = settings.metering.prices_refresh_s
    next_prices = time.monotonic() + prices_every

    async def step() -> None:
        nonlocal next_prices
        if principals_every:
            try:
                await tenancy.refresh_principals()
            except Exception:
                log.exception("refreshing cached keys failed; they expire as usual")
        if time.monotonic() >= next_prices:
            next_prices = time.monotonic() + prices_every
            await tenancy.reload_prices()

    return Periodic("refresh", min(principals_every or prices_every, prices_every), step)


def _retention(files: Files, responses: ResponseStore) -> Periodic:
    """Retention: expired files' bytes and expired stored responses removed every minute;
    what a killed process left in the file store (a cut upload, bytes without a row) swept
    every hour."""
    sweep_every = 60
    rounds = 0

    async def step() -> None:
        nonlocal rounds
        await files.purge_expired()
        await responses.purge_expired()
        rounds += 1
        if rounds % sweep_every == 1:
            await files.sweep_orphans()

    return Periodic("retention", RETENTION_S, step)


def _home(grid: Grid) -> Callable[[], tuple[str, str]]:
    """This gateway's region and its jurisdiction code, as the live topology says now."""

    def home() -> tuple[str, str]:
        topology = grid.topology
        region = topology.region(topology.gateway_region)
        return topology.gateway_region, region.jurisdiction if region is not None else ""

    return home


def _topology(settings: Settings) -> topo.Topology:
    """The topology file (if there is one; else the embedded default).

    Raises:
        TopologyError, OSError: an invalid or unreadable topology file.
    """
    path = settings.topology_path
    if settings.topology_file is not None or path.exists():
        return topo.load(path)
    return topo.default_topology()


def _build_grid(settings: Settings, topology: topo.Topology | None = None) -> Grid:
    """The routing layer over ``topology`` (the database's), else the topology file's or the
    embedded default (``_topology``), completed with the in-process models once they are
    built.

    Raises:
        TopologyError, OSError: an invalid or unreadable topology file.
    """
    topology = topology or _topology(settings)
    r = settings.routing
    health = HealthBook(r.failure_threshold, r.cooldown_s, r.max_cooldown_s)
    return Grid(
        topology,
        config=r,
        health=health,
        probe_interval_s=r.probe_interval_s,
        probe_timeout_s=r.probe_timeout_s,
    )


async def _load_models(state: AppState, factory: EngineFactory) -> None:
    """Start the topology's upstream replicas, then build and start the in-process engines:
    each model (generation or embedding) becomes a ``local`` replica behind its routed
    engine."""
    grid = state.grid
    assert grid is not None
    try:
        await grid.start()
        state.models.sync_routed(grid.engines())
        engines = list(await asyncio.to_thread(factory, state.settings))
        for e in engines:
            grid.attach_local(e)
        await grid.apply(topo.with_local_models(grid.topology, local_models(engines)))
        by_model = {r.card.model_id: r for r in grid.engines()}
        for e in engines:  # in the factory's order, each model behind its routed engine
            state.models.add(by_model.get(e.card.model_id, e))
        state.models.sync_routed(grid.engines())
        for e in engines:
            if isinstance(e, ProcessEngine | ProcessEmbeddingEngine):
                state.processes[e.card.model_id] = e.process
        for e in engines:
            await e.start()
            state.metrics.watch_queue(e.card.model_id, _queue_of(e))
            log.info("model %s ready", e.card.model_id)
    except Exception as exc:
        state.load_error = str(exc)
        log.error("loading models failed: %s", exc)


def _file_search(app: FastAPI) -> FileSearch | None:
    """The vector stores' search once the lifespan built it (the ``file_search`` tool)."""
    state: AppState | None = getattr(app.state, "modelgrid", None)
    return state.knowledge.file_search if state is not None and state.knowledge else None


def _retrieval(state: AppState) -> Retrieval | None:
    return state.knowledge.retrieval if state.knowledge is not None else None


def _queue_of(engine: Engine) -> Callable[[], int]:
    return lambda: engine.queue_depth


class _KnowledgeParts:
    """Knowledge bases' index and indexer, and the indexer's task."""

    def __init__(self, index: KnowledgeIndex, indexer: Indexer, stores: VectorStores) -> None:
        self.index = index
        self.indexer = indexer
        self.task = asyncio.create_task(indexer.run_forever(), name="indexer")
        # expired vector stores' documents, chunks and vectors deleted (between rounds)
        self.expiry = Periodic("vector-store-expiry", EXPIRY_SWEEP_S, stores.sweep_expired)
        self.expiry.start()

    async def stop(self) -> None:
        """Stop the indexer after its step in flight (one count, one embedding call or one
        transaction; bounded), then close the index (its thread ends its transaction)."""
        await self.expiry.stop()
        await self.indexer.aclose()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.task), 30)
        if not self.task.done():  # an engine call that hangs: the index's thread is not in it
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.index.aclose()


def _build_knowledge(settings: Settings, state: AppState) -> _KnowledgeParts | None:
    """Knowledge bases over the database's index (the SQLite file's sqlite-vec and FTS5, or
    PostgreSQL's full-text search and pgvector, or its exact vector scan in the process where
    the server lacks pgvector), their indexer started (``None`` on any other database: the
    API answers 503)."""
    path = sqlite_path(settings.database_url)
    index: KnowledgeIndex
    ann = AnnCache(
        AnnSettings(
            min_vectors=settings.knowledge.ann_min_chunks,
            max_vectors=settings.knowledge.ann_max_vectors,
            nprobe=settings.knowledge.ann_nprobe,
        )
    )
    lexical = LexicalCache(
        LexicalSettings(
            min_chunks=settings.knowledge.lexical_min_chunks,
            max_chunks=settings.knowledge.lexical_max_chunks,
        )
    )
    if path is not None:
        index = SqliteIndex(path, ann, lexical)
    elif settings.database_url.startswith("postgresql"):
        index = PgIndex(
            state.db,
            ann,
            lexical,
            pgvector=None if settings.knowledge.pgvector else False,
            vector_settings=PgVectorSettings(
                hnsw_min_chunks=settings.knowledge.pgvector_hnsw_min_chunks,
                ef_search=settings.knowledge.pgvector_ef_search,
            ),
        )
    else:
        return None
    models = state.models

    def embedding_models() -> list[str]:
        return [c.model_id for c in models.cards() if EMBEDDINGS in c.capabilities]

    def chat_model() -> str | None:  # the re-ranker's judge: the default chat model, if any
        try:
            return default_chat_model(models, settings.engine.models)
        except ServiceUnavailableError:
            return None

    indexing = EmbeddingService(models, IndexingMeter(state.tenancy), state.metrics)
    indexer = Indexer(
        state.sessions,
        index,
        KnowledgeEmbedder(indexing),
        state.tenancy.principal_of_key,
        settings.knowledge,
        owner=f"{socket.gethostname()}:{settings.data_dir}",
    )
    bases = KnowledgeBases(
        state.sessions,
        state.control.inventory,
        index,
        settings.knowledge,
        embedding_models=embedding_models,
        wake=indexer.wake,
    )
    retrieval = Retrieval(
        index, KnowledgeEmbedder(state.embeddings), fusion.by_method(settings.knowledge.fusion)
    )
    stores = VectorStores(state.sessions, bases, state.control.inventory)
    reranker = ChatReranker(state.chat, chat_model)
    state.knowledge = Knowledge(
        bases,
        retrieval,
        stores,
        VectorStoreFiles(state.sessions, stores, state.control.files),
        FileSearch(retrieval, stores, state.sessions, reranker),
        reranker,
    )
    return _KnowledgeParts(index, indexer, stores)


__all__ = ["app_from_environment", "create_app"]
