"""The one place that chooses and builds engines: kinds by name, imported lazily so
``modelgrid --help`` never loads llama.cpp or PyTorch.

- ``gateway_engines(settings)``: what ``modelgrid serve`` runs (``app.create_app``'s default);
- ``build_engine(kind, model, ...)``: one in-process replica (an engine worker's, and the
  gateway's own with ``engine.isolation = "in_process"``);
- ``build_process_engine``: a replica in its own supervised ``modelgrid engine`` process;
- ``build_upstream_engine`` / ``build_worker_embedding_engine``: replicas elsewhere.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from modelgrid.config import EngineSettings, Settings, UpstreamSettings
from modelgrid.engines.artifacts import Progress, prepare
from modelgrid.engines.base import Engine, ModelCard
from modelgrid.engines.catalog import CATALOG

KINDS: dict[str, str] = {
    "llamacpp": "modelgrid.engines.llamacpp:LlamaCppEngine",
    "fake": "modelgrid.engines.fake:FakeEngine",
    "upstream": "modelgrid.engines.upstream:UpstreamEngine",
}


def load_kind(kind: str) -> Callable[..., Any]:
    """The factory registered for ``kind`` (``KeyError`` if unknown)."""
    module, _, attr = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def build_packaged_engine(
    model_id: str,
    models_dir: Path,
    *,
    n_ctx: int,
    n_threads: int,
    n_batch: int,
    progress: Progress | None = None,
) -> Engine:
    """A llama.cpp replica of a packaged model, its GGUF joined and verified first.

    Raises:
        KeyError: ``model_id`` is not in the catalog.
        ServiceUnavailableError / ModelIntegrityError: from ``artifacts.prepare``.
    """
    spec = CATALOG[model_id]
    path = prepare(spec, models_dir, progress)
    factory = load_kind("llamacpp")
    engine: Engine = factory(
        model_id, path, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch, owned_by=spec.owned_by
    )
    return engine


EngineKind = Literal["llamacpp", "fake", "embedding"]


def build_engine(
    kind: EngineKind,
    model_id: str,
    models_dir: Path,
    engine: EngineSettings,
    *,
    fake_token_delay_s: float = 0.0,
) -> Engine:
    """One in-process replica of ``model_id``: llama.cpp (the GGUF joined and verified first;
    blocking), a sentence-transformers embedding model, or the scripted engine of tests.

    Raises:
        KeyError: ``model_id`` is not in the catalog of its kind, or (embedding) not installed.
    """
    if kind == "embedding":
        from modelgrid.engines.embedding import build_embedding_engines

        built = build_embedding_engines(
            [model_id], batch_size=engine.embedding_batch_size, threads=engine.embedding_threads
        )
        if not built:
            raise KeyError(f"embedding model {model_id!r} is not installed")
        return built[0]
    if kind == "fake":
        fake: Engine = load_kind("fake")(
            model_id, context_length=engine.n_ctx, token_delay_s=fake_token_delay_s
        )
        return fake
    return build_packaged_engine(
        model_id,
        models_dir,
        n_ctx=engine.n_ctx,
        n_threads=engine.n_threads,
        n_batch=engine.n_batch,
    )


def gateway_engines(settings: Settings) -> list[Engine]:
    """The engines the gateway runs itself, then the models served by OpenAI-compatible
    upstreams (``settings.upstreams``; one named like an embedded model replaces it).

    Its own: a llama.cpp replica of each model of ``settings.engine.models``, then the
    installed embedding models of ``settings.engine.embedding_models``, each in its own
    supervised engine process (``engine.isolation = "process"``, the default) or inside the
    gateway. (Tests and benchmarks serve the scripted engine instead: ``create_app(settings,
    engine_factory=...)``.)
    """
    from modelgrid.engines.embedding import installed_embedding_models

    e = settings.engine
    own: list[tuple[EngineKind, str]] = [("llamacpp", m) for m in e.models]
    own += [("embedding", m) for m in installed_embedding_models(e.embedding_models)]
    if e.isolation == "process":
        engines = [
            build_process_engine(m, kind, settings.models_dir, data_dir=settings.data_dir, engine=e)
            for kind, m in own
        ]
    else:
        engines = [build_engine(kind, m, settings.models_dir, e) for kind, m in own]
    return [*engines, *(build_upstream_engine(u) for u in settings.all_upstreams())]


def build_process_engine(
    model_id: str,
    kind: EngineKind,
    models_dir: Path,
    *,
    data_dir: Path,
    engine: EngineSettings,
    progress: Progress | None = None,
    fake_token_delay_s: float = 0.0,
) -> Engine:
    """A replica in its own supervised process (``modelgrid engine``, ``engines.process``):
    a packaged llama.cpp model (its GGUF joined and verified here first, so a restart only
    loads it), a packaged embedding model (``engines.process_embedding``) or, for tests of
    process supervision, the scripted engine (``fake``, ``fake_token_delay_s`` a token).
    Nothing starts before ``start()``.

    Raises:
        KeyError: a model id not in its catalog.
        ServiceUnavailableError / ModelIntegrityError: from ``artifacts.prepare``.
    """
    from modelgrid.engines.process import EngineProcess

    args = ["--model", model_id, "--engine", kind, "--region", "local"]
    owned_by = "modelgrid"
    if kind == "llamacpp":
        spec = CATALOG[model_id]
        prepare(spec, models_dir, progress)
        owned_by = spec.owned_by
    elif kind == "fake":
        args += ["--fake-token-delay-s", str(fake_token_delay_s)]
    env = {
        "MODELGRID_DATA_DIR": str(data_dir),
        "MODELGRID_ENGINE__N_CTX": str(engine.n_ctx),
        "MODELGRID_ENGINE__N_THREADS": str(engine.n_threads),
        "MODELGRID_ENGINE__N_BATCH": str(engine.n_batch),
        "MODELGRID_ENGINE__EMBEDDING_BATCH_SIZE": str(engine.embedding_batch_size),
        "MODELGRID_ENGINE__EMBEDDING_THREADS": str(engine.embedding_threads),
    }
    process = EngineProcess(
        model_id,
        args,
        env=env,
        ready_timeout_s=engine.ready_timeout_s,
        hang_timeout_s=engine.hang_timeout_s,
    )
    if kind == "embedding":
        from modelgrid.engines.process_embedding import ProcessEmbeddingEngine

        card, dimensions = _embedding_card(model_id, model_id)
        return ProcessEmbeddingEngine(
            process, card, dimensions=dimensions, restart_wait_s=engine.restart_wait_s
        )
    from modelgrid.engines.process_engine import ProcessEngine

    card = ModelCard(model_id, owned_by, int(time.time()), engine.n_ctx)
    return ProcessEngine(process, card, restart_wait_s=engine.restart_wait_s)


def _embedding_card(served_id: str, model_id: str) -> tuple[ModelCard, int]:
    """The card (its window read from the worker at start) and vector length of packaged
    embedding model ``model_id`` served as ``served_id``."""
    from modelgrid.engines.embedding import EMBEDDING_CATALOG, EMBEDDINGS

    em = EMBEDDING_CATALOG[model_id]
    card = ModelCard(served_id, em.owned_by, int(time.time()), 0, frozenset({EMBEDDINGS}))
    return card, em.dimensions


def build_worker_embedding_engine(
    model_id: str, base_url: str, *, upstream_model: str | None = None
) -> Engine:
    """A packaged embedding model served by a ``modelgrid engine`` worker elsewhere (an
    ``upstream`` replica at ``base_url``, ``engines.process_embedding``), no I/O yet.

    Raises:
        KeyError: the model (``upstream_model``, else ``model_id``) is not in the catalog.
    """
    from modelgrid.engines.process_embedding import RemoteWorker, WorkerEmbeddingEngine

    card, dimensions = _embedding_card(model_id, upstream_model or model_id)
    return WorkerEmbeddingEngine(RemoteWorker(base_url), card, dimensions=dimensions)


def build_upstream_engine(upstream: UpstreamSettings) -> Engine:
    """A replica behind an OpenAI-compatible endpoint (``engines.upstream``), no I/O yet."""
    factory: Any = load_kind("upstream")
    engine: Engine = factory.from_settings(upstream)
    return engine


__all__ = [
    "KINDS",
    "EngineKind",
    "build_engine",
    "build_packaged_engine",
    "build_process_engine",
    "build_upstream_engine",
    "build_worker_embedding_engine",
    "gateway_engines",
    "load_kind",
]
