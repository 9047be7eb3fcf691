"""``RoutedEngine``: one model across regions and replicas, behind the ``Engine`` protocol.

Serving keeps calling ``prepare`` and ``stream``; this engine puts the router between them
and the replicas' engines:

- ``prepare`` applies residency and picks a replica (``Router.pick``: 403 / 503 here, before
  admission and before any byte), then prepares the request on that replica's engine.
- ``stream`` streams from the replica. If the attempt fails before its first delta with a
  retryable error (connection refused, dropped, 5xx, overloaded), the request is prepared
  on the next pick — never outside the caller's allowed regions — and streamed from there,
  up to ``max_attempts`` replicas; the client sees nothing of the failed attempts. Once a
  delta has gone out, a failure ends the stream with the error (serving turns it into an
  error event): never a silent truncation, never a spliced answer. A replica's 429 that no
  other replica can take instead reaches the client as that 429, with its ``Retry-After``.

Each attempt is reported to the router (in-flight counts, circuit breakers) and the first
delta records the prompt prefix for affinity. ``placement_of(prepared)`` tells serving where
the request ran (response headers, usage region).

``tokenize`` / ``detokenize`` run on one replica picked the same way, under the same
residency (a key limited to one region never has its text tokenized elsewhere), failing over
to the next allowed replica on a retryable error; they are not counted as attempts (no
breaker verdicts, no prefix recorded: the router judges replicas by generation).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Generic, Protocol, TypeVar

from modelgrid.core.errors import ModelgridError, ServiceUnavailableError
from modelgrid.core.types import Delta, InferenceRequest, RoutingHints
from modelgrid.engines.base import PREPARED, Engine, ModelCard, PreparedRequest, TokenizeOptions
from modelgrid.routing.prefix import fingerprint, prompt_text
from modelgrid.routing.router import Outcome, Placement, Router, retryable, verdict


@dataclass(slots=True)
class Route:
    """The routed engine's payload in a ``PreparedRequest``: the current attempt."""

    hints: RoutingHints
    blocks: tuple[int, ...]
    placement: Placement
    engine: Engine
    inner: PreparedRequest
    tried: tuple[str, ...] = ()


def placement_of(prepared: PreparedRequest) -> Placement | None:
    """Where a prepared request runs (its latest attempt), or ``None`` if it is not routed."""
    payload = prepared.payload
    return payload.placement if isinstance(payload, Route) else None


def _sync(outer: PreparedRequest, inner: PreparedRequest) -> None:
    outer.prompt_tokens = inner.prompt_tokens
    outer.cached_prompt_tokens = inner.cached_prompt_tokens
    outer.prompt_tokens_estimated = inner.prompt_tokens_estimated
    outer.max_new_tokens = inner.max_new_tokens


class Replicated(Protocol):
    """What a routed model reads of each replica's engine."""

    @property
    def ready(self) -> bool: ...

    @property
    def queue_depth(self) -> int: ...


E = TypeVar("E", bound=Replicated)
R = TypeVar("R")


class RoutedModel(Generic[E]):
    """What the routed engines of generation and embedding models share: the model's
    replicas, their engines (``E``), its card, readiness and queue depth.

    Args:
        model_id: The served id.
        router: Picks replicas and keeps their health.
        engine_for: The engine of a replica id (``None`` if it has none now).
        card: The model's card (``/v1/models``).
        replica_ids: The ids of the model's replicas, for readiness and queue depth.
    """

    def __init__(
        self,
        model_id: str,
        router: Router,
        engine_for: Callable[[str], E | None],
        card: Callable[[], ModelCard],
        replica_ids: Callable[[], Sequence[str]],
    ) -> None:
        self.model_id = model_id
        self.router = router
        self._engine_for = engine_for
        self._card = card
        self._replica_ids = replica_ids

    @property
    def card(self) -> ModelCard:
        return self._card()

    def _engines(self) -> list[E]:
        return [e for rid in self._replica_ids() if (e := self._engine_for(rid)) is not None]

    @property
    def ready(self) -> bool:
        """Some replica can take requests (health is judged per request, by the router)."""
        return any(e.ready for e in self._engines())

    @property
    def queue_depth(self) -> int:
        return sum(e.queue_depth for e in self._engines())

    async def start(self) -> None:
        return None  # replicas are started by their owner (``routing.grid``)

    async def aclose(self) -> None:
        return None  # likewise closed by their owner


class RoutedEngine(RoutedModel[Engine]):
    """A model served by the replicas of its deployments (see the module docstring; the
    arguments are ``RoutedModel``'s)."""

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        """Residency check, first pick, and the replica's own ``prepare``.

        Raises:
            PermissionDeniedError: region not allowed (403).
            InvalidRequestError: unknown requested region (400).
            ServiceUnavailableError: no allowed replica available (503, ``Retry-After``).
            ContextLengthExceededError, InvalidRequestError: from the replica's engine.
        """
        cfg = self.router.config
        hints = request.routing or RoutingHints()
        blocks = fingerprint(
            prompt_text(request), block_chars=cfg.block_chars, max_chars=cfg.max_prefix_chars
        )
        request.prefix_fingerprint = blocks  # for a pool that routes by it (``prefix_header``)
        route = self._route(request, hints, blocks, ())
        inner = route.inner
        return PreparedRequest(
            request=request,
            prompt_tokens=inner.prompt_tokens,
            max_new_tokens=inner.max_new_tokens,
            payload=route,
            cached_prompt_tokens=inner.cached_prompt_tokens,
            prompt_tokens_estimated=inner.prompt_tokens_estimated,
        )

    def _route(
        self,
        request: InferenceRequest,
        hints: RoutingHints,
        blocks: tuple[int, ...],
        tried: tuple[str, ...],
    ) -> Route:
        """Pick a replica not yet tried that has an engine, and prepare on it."""
        while True:
            placement = self.router.pick(self.model_id, hints, blocks, exclude=tried)
            engine = self._engine_for(placement.replica_id)
            if engine is not None:
                route = Route(hints, blocks, placement, engine, engine.prepare(request), tried)
                self.router.reserve(placement)  # seen by the next pick, before ``begin``
                return route
            tried = (*tried, placement.replica_id)  # removed since the snapshot: skip it

    async def stream(self, prepared: PreparedRequest) -> AsyncGenerator[Delta, None]:
        """Stream from the picked replica, failing over before the first delta.

        Raises:
            ServiceUnavailableError: every allowed replica failed or is unavailable.
            UpstreamError, EngineError, …: the last attempt's error, or a failure after the
                first delta.
        """
        route: Route = prepared.payload
        router = self.router
        while True:
            placement = route.placement
            router.begin(placement)
            outcome, reason, started = Outcome.ABANDONED, "", False
            try:
                async with aclosing(route.engine.stream(route.inner)) as deltas:
                    async for delta in deltas:
                        if not started:
                            started = True
                            router.served(placement, route.blocks)
                        _sync(prepared, route.inner)
                        yield delta
                _sync(prepared, route.inner)
                outcome = Outcome.SUCCESS
                return
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                _sync(prepared, route.inner)
                outcome, reason = verdict(exc)
                if started or not retryable(exc):
                    raise
                failure = exc
            finally:
                router.end(placement, outcome, reason)
            route = router.fail_over(
                self.model_id,
                failure,
                (*route.tried, placement.replica_id),
                partial(self._route, prepared.request, route.hints, route.blocks),
            )
            prepared.payload = route
            _sync(prepared, route.inner)

    async def tokenize(
        self, request: InferenceRequest, options: TokenizeOptions = PREPARED
    ) -> list[int]:
        """The prompt's token ids from an allowed replica (see the module docstring).

        Raises:
            PermissionDeniedError, InvalidRequestError, ServiceUnavailableError: as
                ``prepare``; the replica's own errors (the last one's, after failovers).
        """
        return await self._on_replica(request.routing, lambda e: e.tokenize(request, options))

    async def detokenize(self, tokens: Sequence[int], routing: RoutingHints | None = None) -> str:
        """``tokens``' text from an allowed replica; raises as ``tokenize``."""
        return await self._on_replica(routing, lambda e: e.detokenize(tokens, routing))

    async def _on_replica(
        self, hints: RoutingHints | None, call: Callable[[Engine], Awaitable[R]]
    ) -> R:
        """``call`` on a picked replica's engine, on the next allowed one after a retryable
        failure (``Router.fail_over``'s rules: ``max_attempts``, a 429 kept). With no other
        replica left, a replica that could not be reached gives the router's 503; one that
        answered with a server error (a 5xx, e.g. no ``/tokenize`` there) gives that error,
        which says more than "try again later"."""
        hints = hints or RoutingHints()
        placement, engine = self._pick(hints, ())
        tried: tuple[str, ...] = ()
        while True:
            try:
                return await call(engine)
            except Exception as exc:
                if not retryable(exc):
                    raise
                tried = (*tried, placement.replica_id)
                try:
                    placement, engine = self.router.fail_over(
                        self.model_id, exc, tried, partial(self._pick, hints)
                    )
                except ServiceUnavailableError:
                    if isinstance(exc, ModelgridError) and not exc.retryable:
                        raise exc from None
                    raise

    def _pick(self, hints: RoutingHints, tried: tuple[str, ...]) -> tuple[Placement, Engine]:
        while True:
            placement = self.router.pick(self.model_id, hints, exclude=tried)
            engine = self._engine_for(placement.replica_id)
            if engine is not None:
                return placement, engine
            tried = (*tried, placement.replica_id)  # removed since the snapshot: skip it


__all__ = ["Replicated", "Route", "RoutedEngine", "RoutedModel", "placement_of"]
