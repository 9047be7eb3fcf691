"""``Grid``: the topology made live — replica engines, the router, probes, routed engines.

It owns the engines of ``upstream`` replicas (built with ``upstream_factory``, started when
they appear in the topology, closed when they leave it) and refers to the process's own
engines for ``local`` replicas (``attach_local``; they belong to the app). It keeps one routed
engine per deployed model, which serving looks up like any engine — a ``RoutedEngine`` for a
generation model, a ``RoutedEmbeddingEngine`` for an embedding model (its replicas' cards
carry ``"embeddings"``) — and runs the ``HealthMonitor`` that probes upstream replicas.
``apply`` swaps in a new topology (the admin API's changes); requests already running keep
their replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any

from modelgrid.config import RoutingSettings
from modelgrid.engines.base import Engine, ModelCard, Probed
from modelgrid.engines.embedding import EMBEDDING_CATALOG, EMBEDDINGS, EmbeddingEngine
from modelgrid.routing.embedding import RoutedEmbeddingEngine
from modelgrid.routing.engine import RoutedEngine
from modelgrid.routing.health import HealthBook, HealthMonitor, Probe, http_probe
from modelgrid.routing.router import Router
from modelgrid.routing.topology import Deployment, Replica, Topology

log = logging.getLogger("modelgrid.routing")

UpstreamFactory = Callable[[Deployment, Replica], Engine]


def default_upstream_factory(deployment: Deployment, replica: Replica) -> Engine:
    """The engine of an ``upstream`` replica (imported lazily): for a packaged embedding model,
    a client of the ``modelgrid engine`` worker serving it (``engines.process_embedding``);
    otherwise an OpenAI-compatible upstream (``engines.upstream``)."""
    from modelgrid.engines.registry import build_worker_embedding_engine, load_kind

    if (replica.upstream_model or deployment.model) in EMBEDDING_CATALOG:
        return build_worker_embedding_engine(
            deployment.model, replica.base_url or "", upstream_model=replica.upstream_model
        )

    factory: Any = load_kind("upstream")
    engine: Engine = factory(
        deployment.model,
        replica.base_url,
        upstream_model=replica.upstream_model,
        owned_by="modelgrid",
        pool=replica.pool,
        prefix_header=replica.prefix_header,
    )
    return engine


class Grid:
    """The live routing layer (see the module docstring).

    Args:
        topology: Initial topology (upstream engines start in ``start``).
        config: The routing settings (the router's knobs).
        health: Breakers and loads (its thresholds come from settings).
        upstream_factory: Builds the engine of an ``upstream`` replica.
        probe: Checks a replica by id (default: ``_probe_replica``).
        probe_interval_s / probe_timeout_s: Active health checks.
        rng: For power of two choices.
    """

    def __init__(
        self,
        topology: Topology,
        *,
        config: RoutingSettings | None = None,
        health: HealthBook | None = None,
        upstream_factory: UpstreamFactory = default_upstream_factory,
        probe: Probe | None = None,
        probe_interval_s: float = 2.0,
        probe_timeout_s: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        self.local: dict[str, Engine] = {}
        self.upstream: dict[str, tuple[Replica, Engine]] = {}
        self.router = Router(
            topology, config=config, health=health, rng=rng, ready=self._replica_ready
        )
        self.upstream_factory = upstream_factory
        self._probe = probe
        self._http_get: Callable[[str], Awaitable[tuple[int, int]]] | None = None
        self._no_ready_url: set[str] = set()
        self._close_probe: Callable[[], Awaitable[None]] | None = None
        self._probe_timeout_s = probe_timeout_s
        self.monitor: HealthMonitor | None = None
        self._probe_interval_s = probe_interval_s
        self._routed: dict[str, RoutedEngine | RoutedEmbeddingEngine] = {}
        self._lock = asyncio.Lock()
        self.changes = asyncio.Lock()  # serializes read-modify-apply (``routing.admin``)

    @property
    def topology(self) -> Topology:
        return self.router.topology

    # --- engines -----------------------------------------------------------------------------

    def attach_local(self, engine: Engine) -> None:
        """The process's own engine for ``engine.card.model_id`` (``local`` replicas)."""
        self.local[engine.card.model_id] = engine

    def engine_for(self, replica_id: str) -> Engine | None:
        found = self._replica(replica_id)
        if found is None:
            return None
        d, r = found
        if r.kind == "local":
            return self.local.get(d.model)
        entry = self.upstream.get(replica_id)
        return entry[1] if entry is not None else None

    def embedder_for(self, replica_id: str) -> EmbeddingEngine | None:
        """The replica's engine if it is an embedding engine."""
        engine = self.engine_for(replica_id)
        return engine if isinstance(engine, EmbeddingEngine) else None

    def _replica(self, replica_id: str) -> tuple[Deployment, Replica] | None:
        return self.topology.replica(replica_id)

    def _replica_ready(self, replica_id: str) -> bool:
        engine = self.engine_for(replica_id)
        return engine is not None and engine.ready

    def _replica_ids(self, model: str) -> list[str]:
        return [r.id for d in self.topology.deployments_of(model) for r in d.replicas]

    def card(self, model: str) -> ModelCard:
        """The model's card: its local engine's, else its first upstream engine's."""
        engines = [e for rid in self._replica_ids(model) if (e := self.engine_for(rid))]
        local = self.local.get(model)
        source = (
            local if local is not None and local in engines else engines[0] if engines else None
        )
        if source is None:
            return ModelCard(model, "modelgrid", int(time.time()), 0)
        card = source.card
        return card if card.model_id == model else replace(card, model_id=model)

    def engines(self) -> list[Engine]:
        """One routed engine per deployed model (what serving looks models up in)."""
        return [self._routed_engine(m) for m in self.topology.models()]

    def _routed_engine(self, model: str) -> RoutedEngine | RoutedEmbeddingEngine:
        """The model's routed engine, of the kind its replicas' card says (a model whose
        engines were not built yet is taken for a generation model until they are)."""
        embedding = EMBEDDINGS in self.card(model).capabilities
        engine = self._routed.get(model)
        if engine is None or isinstance(engine, RoutedEmbeddingEngine) != embedding:
            card = partial(self.card, model)
            replica_ids = partial(self._replica_ids, model)
            if embedding:
                engine = RoutedEmbeddingEngine(
                    model, self.router, self.embedder_for, card, replica_ids
                )
            else:
                engine = RoutedEngine(model, self.router, self.engine_for, card, replica_ids)
            self._routed[model] = engine
        return engine

    # --- lifecycle ---------------------------------------------------------------------------

    async def apply(self, topology: Topology) -> None:
        """Make ``topology`` current: start the engines of new or changed upstream replicas,
        swap it into the router, then close the engines of replicas that left."""
        async with self._lock:
            wanted = {r.id: (d, r) for d, r in topology.replicas() if r.kind == "upstream"}
            started: dict[str, tuple[Replica, Engine]] = {}
            for rid, (d, r) in wanted.items():
                current = self.upstream.get(rid)
                if current is None or current[0] != r:
                    started[rid] = (r, self.upstream_factory(d, r))
            # Concurrently: an unreachable upstream must not hold up the others. One that
            # fails to start stays unready (the router skips it) until the next change.
            results = await asyncio.gather(
                *(e.start() for _, e in started.values()), return_exceptions=True
            )
            for rid, result in zip(started, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning("replica %s did not start: %s", rid, result)
            stale = [
                e for rid, (r, e) in self.upstream.items() if rid not in wanted or rid in started
            ]
            kept = {rid: v for rid, v in self.upstream.items() if rid in wanted}
            self.upstream = {**kept, **started}
            self.router.set_topology(topology)
            for m in [m for m in self._routed if m not in topology.models()]:
                del self._routed[m]
            for e in stale:
                await _close(e)

    async def start(self) -> None:
        """Start the current topology's upstream engines and the health probes."""
        await self.apply(self.topology)
        if self.monitor is None:
            self.monitor = HealthMonitor(
                self.router.health,
                self._probe_targets,
                self._probe or self._probe_replica,
                interval_s=self._probe_interval_s,
            )
            self.monitor.start()

    def _probe_targets(self) -> list[str]:
        """Upstream replicas, and local ones whose engine is remote too (an upstream from
        ``settings.upstreams`` serving a model in the gateway's own region)."""
        return [
            r.id
            for d, r in self.topology.replicas()
            if r.kind == "upstream" or isinstance(self.local.get(d.model), Probed)
        ]

    async def _probe_replica(self, replica_id: str) -> tuple[bool, int]:
        """GET the replica's ``health_url``, else its server's ``/health/ready`` (what
        ``modelgrid engine`` workers and gateways answer, with their queue depth); where that
        is a 404 (vLLM, llama.cpp's server…), the engine's own ``health()``."""
        entry = self.upstream.get(replica_id)
        if entry is None:
            engine = self.engine_for(replica_id)
            if not isinstance(engine, Probed):
                return False, 0
            return await asyncio.wait_for(engine.health(), self._probe_timeout_s), 0
        replica, engine = entry
        url = replica.health_url or _ready_url(replica.base_url or "")
        if replica.health_url or replica_id not in self._no_ready_url:
            if self._http_get is None:
                self._http_get, self._close_probe = http_probe(self._probe_timeout_s)
            status, queue = await self._http_get(url)
            if status != 404 or replica.health_url:
                return 200 <= status < 300, queue
            self._no_ready_url.add(replica_id)
        if isinstance(engine, Probed):
            return await asyncio.wait_for(engine.health(), self._probe_timeout_s), 0
        return engine.ready, 0

    async def aclose(self) -> None:
        if self.monitor is not None:
            await self.monitor.aclose()
            self.monitor = None
        if self._close_probe is not None:
            await self._close_probe()
            self._close_probe = None
        engines = [e for _, e in self.upstream.values()]
        self.upstream = {}
        for e in engines:
            await _close(e)


def _ready_url(base_url: str) -> str:
    """``http://h:p/v1`` → ``http://h:p/health/ready``."""
    root = base_url.rstrip("/").removesuffix("/v1")
    return f"{root}/health/ready"


async def _close(engine: Engine) -> None:
    with contextlib.suppress(Exception):
        await engine.aclose()


def local_models(engines: Iterable[Engine]) -> list[str]:
    """Ids of the models of ``engines`` (generation and embedding models alike: each is
    served through a ``local`` replica)."""
    return [e.card.model_id for e in engines]


__all__ = ["Grid", "UpstreamFactory", "default_upstream_factory", "local_models"]
