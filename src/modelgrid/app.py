"""Composition root: ``create_app(settings)`` builds the ASGI app; its lifespan builds ``AppState``.

Start-up order: migrate the database (embedded default), start the usage writer, then load
the models in the background so ``/health/live`` answers at once and ``/health/ready`` turns
ready when the weights are in memory. Shutdown flushes pending usage before closing engines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from modelgrid import __version__
from modelgrid.api import errors
from modelgrid.api.middleware import RequestContext
from modelgrid.api.routers import admin, completions, dashscope, embeddings, health, openai
from modelgrid.api.state import AppState
from modelgrid.config import Settings
from modelgrid.engines.base import Engine
from modelgrid.engines.embedding import build_embedding_engines
from modelgrid.engines.registry import build_packaged_engine, build_upstream_engine
from modelgrid.serving.chat import ChatService
from modelgrid.serving.completions import CompletionService
from modelgrid.serving.embeddings import EmbeddingService
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.storage import db, migrate
from modelgrid.tenancy.metering import UsageWriter
from modelgrid.tenancy.service import TenancyService

log = logging.getLogger("modelgrid")

EngineFactory = Callable[[Settings], Iterable[Engine]]


def packaged_engines(settings: Settings) -> list[Engine]:
    """The embedded llama.cpp replicas named in ``settings.engine.models`` (blocking: joins
    and verifies the GGUF files), then the installed embedding models of
    ``settings.engine.embedding_models``, then the models served by OpenAI-compatible
    upstreams (``settings.upstreams``; one named like an embedded model replaces it)."""
    e = settings.engine
    upstreams = [build_upstream_engine(u) for u in settings.all_upstreams()]
    generators = [
        build_packaged_engine(
            model_id, settings.models_dir, n_ctx=e.n_ctx, n_threads=e.n_threads, n_batch=e.n_batch
        )
        for model_id in e.models
    ]
    embedders = build_embedding_engines(
        e.embedding_models, batch_size=e.embedding_batch_size, threads=e.embedding_threads
    )
    return [*generators, *embedders, *upstreams]


def create_app(
    settings: Settings | None = None, engine_factory: EngineFactory | None = None
) -> FastAPI:
    """Build the app.

    Args:
        settings: Effective settings (defaults from the environment).
        engine_factory: Builds the engines to serve (default: the packaged llama.cpp models).
            Tests of the layers above engines pass a factory returning ``FakeEngine``s.
    """
    settings = settings or Settings()
    factory = engine_factory or packaged_engines
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.database_url
        await asyncio.to_thread(migrate.upgrade, url)
        engine = db.create_engine(url, echo=settings.database.echo)
        sessions = db.sessionmaker(engine)
        usage = UsageWriter(
            sessions,
            flush_interval_s=settings.metering.flush_interval_s,
            batch_size=settings.metering.batch_size,
        )
        usage.start()
        tenancy = TenancyService(sessions, usage)
        models = ModelRegistry()
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
            embeddings=EmbeddingService(models, tenancy, metrics),
        )
        app.state.modelgrid = state
        loader = asyncio.create_task(_load_models(state, factory), name="load-models")
        try:
            yield
        finally:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            await usage.aclose()
            for e in models.engines():
                await e.aclose()
            await engine.dispose()

    app = FastAPI(title="modelgrid", version=__version__, lifespan=lifespan)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(openai.router)
    app.include_router(completions.router)
    app.include_router(embeddings.router)
    app.include_router(openai.router, prefix="/compatible-mode")  # DashScope's OpenAI mode
    app.include_router(completions.router, prefix="/compatible-mode")
    app.include_router(embeddings.router, prefix="/compatible-mode")
    app.include_router(dashscope.router)
    app.include_router(admin.router)
    app.add_middleware(RequestContext, metrics=metrics)
    return app


async def _load_models(state: AppState, factory: EngineFactory) -> None:
    try:
        engines = list(await asyncio.to_thread(factory, state.settings))
        for e in engines:
            state.models.add(e)
            await e.start()
            state.metrics.watch_queue(e.card.model_id, lambda e=e: e.queue_depth)
            log.info("model %s ready", e.card.model_id)
    except Exception as exc:
        state.load_error = str(exc)
        log.error("loading models failed: %s", exc)


__all__ = ["create_app", "packaged_engines"]
