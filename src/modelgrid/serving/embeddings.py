"""OpenAI embeddings (https://platform.openai.com/docs/api-reference/embeddings), framework-free.

A request is one metered call (``serving.metered``, the sequence generation shares): model
scope, then the model's ``RoutedEmbeddingEngine`` routes it (``routing.embedding``: the key's
regions and jurisdictions, the requested region, health, drained regions; 403 / 503 before
anything is billed), input checks, ``count_tokens`` on the picked replica (exact usage from
the model's tokenizer and the length check), admission for exactly those tokens, then one
``embed`` call with every input (one batch) on the same replica — another allowed one if it
fails before answering — and one usage record (``prompt_tokens`` only, the region it ran in),
whether the engine succeeded, failed (5xx) or the caller went away (499). Where it ran goes
out as ``x-modelgrid-region`` / ``x-modelgrid-replica``. Requests refused before admission
(validation, scope, unknown model, residency, an input over the model's length) are not
recorded, as in chat.
"""

from __future__ import annotations

from typing import Any

from modelgrid.core.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    UnsupportedParameterError,
)
from modelgrid.core.types import CallContext
from modelgrid.engines.embedding import EMBEDDINGS
from modelgrid.protocol.openai.embeddings import (
    EmbeddingRequest,
    embedding_response,
    input_texts,
)
from modelgrid.routing import RoutedEmbeddingEngine
from modelgrid.serving.meter import Meter
from modelgrid.serving.metered import MeteredCall, Usage, placement_headers, routing_hints
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.service import Principal

ENDPOINT = "embeddings"


def check_lengths(counts: list[int], limit: int, single: bool) -> None:
    """Refuse any input longer than the model reads (rather than embedding a truncated text).

    Raises:
        ContextLengthExceededError: names the first input over ``limit`` tokens.
    """
    for i, n in enumerate(counts):
        if n > limit:
            raise ContextLengthExceededError(
                f"This model's maximum input length is {limit} tokens, but "
                f"{'the input has' if single else f'input {i} has'} {n} tokens. "
                "Please shorten it or split it.",
                param="input" if single else f"input[{i}]",
            )


class EmbeddingService:
    """Embeddings, each request routed to one replica of its model (see the module
    docstring)."""

    def __init__(self, models: ModelRegistry, meter: Meter, metrics: Metrics) -> None:
        self.models = models
        self.meter = meter
        self.metrics = metrics

    def engine(self, model_id: str) -> RoutedEmbeddingEngine:
        """The routed engine of embedding model ``model_id``.

        Raises:
            ModelNotFoundError / ServiceUnavailableError: unknown or still loading.
            InvalidRequestError: the model exists but does not create embeddings.
        """
        engine = self.models.get(model_id)
        if not isinstance(engine, RoutedEmbeddingEngine):
            names = [c.model_id for c in self.models.cards() if EMBEDDINGS in c.capabilities]
            raise InvalidRequestError(
                f"The model '{model_id}' does not create embeddings. Embedding models: "
                f"{', '.join(names) or 'none installed'}.",
                param="model",
                code="model_not_supported",
            )
        return engine

    async def create(
        self, principal: Principal, body: EmbeddingRequest, ctx: CallContext
    ) -> dict[str, Any]:
        """Embed ``body.input`` and return OpenAI's ``list`` object.

        Raises:
            InvalidRequestError / UnsupportedParameterError: see ``input_texts``; a
                ``dimensions`` the model cannot give.
            See ``embed`` for the rest.
        """
        texts = input_texts(body)
        vectors, tokens = await self.embed(
            principal,
            body.model,
            texts,
            ctx,
            single=isinstance(body.input, str),
            dimensions=body.dimensions,
        )
        return embedding_response(
            model=body.model,
            vectors=vectors,
            prompt_tokens=tokens,
            encoding_format=body.encoding_format,
        )

    async def embed(
        self,
        principal: Principal,
        model: str,
        inputs: list[str] | list[list[int]],
        ctx: CallContext,
        *,
        single: bool = False,
        dimensions: int | None = None,
        dimensions_param: str = "dimensions",
    ) -> tuple[list[bytes], int]:
        """Embed ``texts`` (protocol-neutral: the OpenAI and DashScope routes both use it).

        Returns:
            (little-endian float32 bytes per text, in order; tokens processed).

        Raises:
            UnsupportedParameterError: ``dimensions`` set and not the model's (``param`` is
                ``dimensions_param``).
            ContextLengthExceededError: an input longer than the model reads.
            PermissionDeniedError: the key may not use this model, or no region it may use
                has the model, or the requested region is not one of them (403).
            InvalidRequestError: the requested region does not exist (400).
            ModelNotFoundError, ServiceUnavailableError (no replica available: 503),
            EngineError.
            RateLimitError, QuotaExceededError: a limit of the workspace or key (429).
        """
        call = MeteredCall(
            principal, model, meter=self.meter, metrics=self.metrics, endpoint=ENDPOINT, ctx=ctx
        )
        route = self.engine(model).route(routing_hints(principal, ctx))
        placement_headers(route.placement, ctx)
        texts = [x for x in inputs if isinstance(x, str)]
        ids = [x for x in inputs if isinstance(x, list)]
        if ids:
            texts = await route.decode(ids)
        for text in texts:  # an unpaired surrogate raises UnicodeEncodeError: a 400 at the edge
            text.encode("utf-8")
        if dimensions is not None and dimensions != route.dimensions:
            raise UnsupportedParameterError(
                f"The model '{model}' returns {route.dimensions}-dimensional vectors and "
                f"cannot shorten them: '{dimensions_param}' must be {route.dimensions} or "
                "omitted.",
                param=dimensions_param,
            )
        counts = await route.count_tokens(texts)
        check_lengths(counts, route.max_input_tokens, single=single)
        tokens = sum(counts)
        placement_headers(route.placement, ctx)  # after any failover
        await call.admit(tokens, region=route.placement.region)
        with call.running(
            lambda _status: Usage(
                tokens, region=route.placement.region, replica=route.placement.replica_id
            )
        ):
            result = await route.embed(texts)
        placement_headers(route.placement, ctx)
        return result.vectors, tokens


__all__ = ["ENDPOINT", "EmbeddingService", "check_lengths"]
