"""The Serve deployment of one model: ``EngineReplica``, the engine worker's app in a replica.

Each replica builds the model's engine (``engines.registry.build_engine``, as ``modelgrid
engine`` does) and starts it in its constructor, so Serve routes nothing to it before its
weights are loaded; then it serves ``worker.create_worker_app`` over that engine through
``serve.ingress`` (late-bound: ``__serve_build_asgi_app__``). The OpenAI wire,
``/health/live``, ``/health/ready`` and ``/metrics`` are the worker's own, not re-implemented.

Health from real traffic (``TrafficHealth``): the replica's app is wrapped by a pure ASGI
layer that watches each response's status and, in event streams, the error events the worker
sends when generation fails after the first token. ``failure_threshold`` such failures in a
row (a 5xx, or a stream ending in an error event; any success resets the count) make Serve's
health check (``check_health``) fail, and Serve replaces the replica: a "half-alive" replica
that answers probes but fails real requests is caught. The check is cheap and runs on the
event loop, which llama.cpp's decode thread leaves free, so a replica busy generating is not
taken for dead (a failure mode Ray Serve users report with checks that do real work).

Each response carries ``x-modelgrid-serve-replica``: the Serve replica that answered (its
unique id), for logs, tests and the prefix-affinity figures (``bench/fleet.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ray import serve
from ray.serve.deployment import Application, Deployment

from modelgrid.config import Settings
from modelgrid.engines.base import Engine
from modelgrid.fleet.spec import DEPLOYMENT_NAME, FleetModel
from modelgrid.worker import create_worker_app

log = logging.getLogger("modelgrid.fleet")

REPLICA_HEADER = "x-modelgrid-serve-replica"
_ERROR_EVENT = b'data: {"error"'

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


class TrafficHealth:
    """Consecutive failed responses of one replica (see the module docstring).

    Args:
        failure_threshold: Failures in a row at which the replica counts as unhealthy.
    """

    def __init__(self, failure_threshold: int = 3) -> None:
        self.failure_threshold = failure_threshold
        self.consecutive_failures = 0
        self.last_failure = ""

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures < self.failure_threshold

    def success(self) -> None:
        self.consecutive_failures = 0

    def failure(self, what: str) -> None:
        self.consecutive_failures += 1
        self.last_failure = what


class WatchedApp:
    """A pure ASGI wrapper (streams pass through untouched) that feeds ``TrafficHealth``
    from the generation routes' responses and names the replica in a response header.

    Args:
        app: The worker's app.
        health: Where verdicts go.
        replica_id: Sent as ``x-modelgrid-serve-replica``.
    """

    def __init__(self, app: ASGIApp, health: TrafficHealth, replica_id: str) -> None:
        self.app = app
        self.health = health
        self._header = (REPLICA_HEADER.encode(), replica_id.encode())

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        judged = scope.get("method") == "POST" and not scope.get("path", "").endswith(
            ("/tokenize", "/detokenize")
        )
        status = 0
        errored = False

        async def watch(message: Message) -> None:
            nonlocal status, errored
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", ()), self._header]
            elif message["type"] == "http.response.body" and not errored:
                errored = _ERROR_EVENT in message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if judged and status:
                if status >= 500 or errored:
                    self.health.failure(f"HTTP {status}" + (" and an error event" * errored))
                else:
                    self.health.success()


def build_replica_engine(spec: FleetModel, settings: Settings) -> Engine:
    """The model's engine as ``modelgrid engine`` builds it (llama.cpp: the packaged GGUF
    joined and verified first; blocking).

    Raises:
        KeyError: the model is not packaged.
    """
    from modelgrid.engines.registry import build_engine

    engine_settings = settings.engine
    if spec.n_threads:
        engine_settings = engine_settings.model_copy(update={"n_threads": spec.n_threads})
    engine = build_engine(
        spec.engine,
        spec.model,
        settings.models_dir,
        engine_settings,
        fake_token_delay_s=spec.fake_token_delay_s,
    )
    if spec.engine == "fake" and spec.fake_fail_after_tokens is not None:
        from modelgrid.engines.fake import FakeEngine

        if isinstance(engine, FakeEngine):
            engine.fail_after_tokens = spec.fake_fail_after_tokens
    return engine


class _EngineReplica:
    """One replica of a model (the Serve deployment's class; see the module docstring).

    Args:
        spec: The model's ``FleetModel`` as a dict (what the Serve config's ``args`` hold).
    """

    async def __init__(self, spec: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits it
        self.spec = FleetModel.model_validate(spec)
        self.health = TrafficHealth()
        context = serve.get_replica_context()
        self.replica_id = context.replica_id.unique_id
        settings = Settings()
        engine = await asyncio.to_thread(build_replica_engine, self.spec, settings)
        await engine.start()  # weights loaded before Serve sends a request here
        self.engine = engine
        self.worker_app = create_worker_app(
            lambda: engine, region=f"ray/{context.app_name}", observability=settings.observability
        )
        log.warning("Serve replica %s of %s ready", self.replica_id, self.spec.model)

    def __serve_build_asgi_app__(self) -> ASGIApp:
        app: ASGIApp = self.worker_app
        return WatchedApp(app, self.health, self.replica_id)

    async def check_health(self) -> None:
        """Serve's periodic check: fails once real traffic has failed ``failure_threshold``
        times in a row, or when the worker could not start its engine.

        Raises:
            RuntimeError: the replica is unhealthy (Serve replaces it).
        """
        state = getattr(self.worker_app.state, "worker", None)
        if state is not None and state.load_error:
            raise RuntimeError(f"the engine failed to start: {state.load_error}")
        if not self.health.healthy:
            raise RuntimeError(
                f"{self.health.consecutive_failures} requests in a row failed "
                f"(last: {self.health.last_failure})"
            )


EngineReplica: Deployment = serve.deployment(name=DEPLOYMENT_NAME)(serve.ingress()(_EngineReplica))


def application(spec: FleetModel) -> Application:
    """The Serve application of ``spec``'s model (its deployment options applied)."""
    options = spec.deployment_options()
    router = options.pop("request_router_config", None)
    if router is not None:
        from ray.serve.config import RequestRouterConfig

        options["request_router_config"] = RequestRouterConfig(**router)
    deployment: Deployment = EngineReplica.options(**options)
    return deployment.bind(spec.model_dump(mode="json"))


def build_app(args: dict[str, Any]) -> Application:
    """The app builder a Serve config file names (``import_path``): ``args`` is the model's
    ``FleetModel`` (``spec.serve_config`` writes it); the config's ``deployments`` entry
    then overrides the options it names."""
    return application(FleetModel.model_validate(args))


__all__ = [
    "REPLICA_HEADER",
    "EngineReplica",
    "TrafficHealth",
    "WatchedApp",
    "application",
    "build_app",
    "build_replica_engine",
]
