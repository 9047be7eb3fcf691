"""``RoutedEmbeddingEngine``: one embedding model across regions and replicas.

The embedding twin of ``RoutedEngine`` (``routing.engine``): serving looks it up like any
model and asks it for one request's ``EmbeddingRoute`` (``route(hints)``):

- ``route`` applies residency and picks a replica (``Router.pick``: the caller's allowed
  regions and jurisdictions, the requested region, drained regions and open breakers left
  out), so a forbidden region is a 403 and no available replica a 503, before admission.
- The route's ``count_tokens``, ``decode`` and ``embed`` all go to that replica. A call that
  fails with a retryable error (connection, 5xx, an overloaded replica) moves the request to
  the next pick — never outside the allowed regions — up to ``max_attempts`` replicas, and
  is sent there; the caller sees nothing of the failed attempt. Nothing partial ever comes
  back from a failed call, so every call may be retried.
- Each call is reported to the router (``begin``/``end``: in-flight counts, breakers), and
  ``route.placement`` says where the request ran (response headers, usage region).

A replica's engine is any ``EmbeddingEngine``: the gateway's own engine process for a
``local`` replica, a ``modelgrid engine`` worker for an ``upstream`` one
(``engines.process_embedding``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

from modelgrid.core.types import RoutingHints
from modelgrid.engines.base import ModelCard
from modelgrid.engines.embedding import (
    EmbeddingEngine,
    EmbeddingOnly,
    Embeddings,
)
from modelgrid.routing.engine import RoutedModel
from modelgrid.routing.router import Outcome, Placement, retryable, verdict

T = TypeVar("T")
Pick = tuple[Placement, EmbeddingEngine, tuple[str, ...]]


class RoutedEmbeddingEngine(EmbeddingOnly, RoutedModel[EmbeddingEngine]):
    """An embedding model served by the replicas of its deployments (see the module
    docstring; the arguments are ``RoutedModel``'s). Its own ``count_tokens``, ``decode`` and
    ``embed`` route each call alone, under no residency rule: serving routes every request
    with ``route(hints)``."""

    @property
    def dimensions(self) -> int:
        """The vectors' length (every replica serves the same model; 0 before any has an
        engine)."""
        return next((e.dimensions for e in self._engines()), 0)

    @property
    def max_input_tokens(self) -> int:
        return self.card.context_length

    def route(self, hints: RoutingHints) -> EmbeddingRoute:
        """One request's route: residency check and first pick.

        Raises:
            PermissionDeniedError: region not allowed (403 ``region_not_allowed``).
            InvalidRequestError: unknown requested region (400).
            ModelNotFoundError: the model is deployed nowhere (404).
            ServiceUnavailableError: no allowed replica available (503, ``Retry-After``).
        """
        return EmbeddingRoute(self, hints)

    def pick(self, hints: RoutingHints, tried: tuple[str, ...]) -> Pick:
        """A replica not yet tried that has an engine: (placement, its engine, the replicas
        passed over so far). Raises as ``route``."""
        while True:
            placement = self.router.pick(self.model_id, hints, exclude=tried)
            engine = self._engine_for(placement.replica_id)
            if engine is not None:
                return placement, engine, tried
            tried = (*tried, placement.replica_id)  # removed since the snapshot: skip it

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return await self.route(RoutingHints()).count_tokens(texts)

    async def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        return await self.route(RoutingHints()).decode(token_ids)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        return await self.route(RoutingHints()).embed(texts)


class EmbeddingRoute:
    """The replica serving one request's embedding calls (see the module docstring).

    Attributes:
        placement: Where the request runs (after any failover).
        engine: That replica's engine.
        tried: Replicas left behind (failed, or gone from the topology).
    """

    def __init__(self, owner: RoutedEmbeddingEngine, hints: RoutingHints) -> None:
        self._owner = owner
        self.hints = hints
        self.placement, self.engine, self.tried = owner.pick(hints, ())

    @property
    def card(self) -> ModelCard:
        return self.engine.card

    @property
    def dimensions(self) -> int:
        return self.engine.dimensions

    @property
    def max_input_tokens(self) -> int:
        return self.engine.max_input_tokens

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, from the replica's tokenizer (see ``EmbeddingEngine``)."""
        return await self._call(lambda e: e.count_tokens(texts))

    async def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        """Token-id inputs back to text (see ``EmbeddingEngine``)."""
        return await self._call(lambda e: e.decode(token_ids))

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """The vectors (see ``EmbeddingEngine``)."""
        return await self._call(lambda e: e.embed(texts))

    async def _call(self, op: Callable[[EmbeddingEngine], Awaitable[T]]) -> T:
        """``op`` on the request's replica, failing over to the next on a retryable error.

        Raises:
            ServiceUnavailableError: every allowed replica failed or is unavailable.
            EngineError, InvalidRequestError, …: the last attempt's error, or one that
                would fail anywhere (a 4xx about the input).
        """
        owner = self._owner
        router = owner.router
        while True:
            placement = self.placement
            router.begin(placement)
            outcome, reason = Outcome.ABANDONED, ""
            try:
                result = await op(self.engine)
                outcome = Outcome.SUCCESS
                return result
            except Exception as exc:
                outcome, reason = verdict(exc)
                if not retryable(exc):
                    raise
                failure = exc
            finally:
                router.end(placement, outcome, reason)
            self.placement, self.engine, self.tried = router.fail_over(
                owner.model_id,
                failure,
                (*self.tried, placement.replica_id),
                partial(owner.pick, self.hints),
            )


__all__ = ["EmbeddingRoute", "RoutedEmbeddingEngine"]
