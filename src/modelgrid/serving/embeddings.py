"""OpenAI embeddings (https://platform.openai.com/docs/api-reference/embeddings), framework-free.

A request goes: input checks, model scope and lookup, ``count_tokens`` on the replica (exact
usage from the model's tokenizer and the length check), admission for exactly those tokens,
then one ``embed`` call with every input (one batch, on the engine's worker thread), and one
usage record (``prompt_tokens`` only) handed to the meter's ``finish`` in a ``finally``,
whether the engine succeeded, failed (5xx) or the caller went away (499). Requests refused
before admission (validation, scope, unknown model, an input over the model's length) are not
recorded, as in chat.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from modelgrid.core.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ModelgridError,
    PermissionDeniedError,
    UnsupportedParameterError,
)
from modelgrid.core.types import CallContext, FinishReason, RoutingHints
from modelgrid.engines.embedding import EMBEDDINGS, EmbeddingEngine, Embeddings
from modelgrid.protocol.openai.embeddings import (
    EmbeddingRequest,
    embedding_response,
    input_texts,
)
from modelgrid.serving.generation import STATUS_CLIENT_CLOSED
from modelgrid.serving.meter import Meter
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.events import UsageEvent, now_utc
from modelgrid.tenancy.ratelimit import Admission
from modelgrid.tenancy.service import Principal

ENDPOINT = "embeddings"


def _finish_reason(status: int) -> str | None:
    if status == 200:
        return None
    if status == STATUS_CLIENT_CLOSED:
        return FinishReason.CANCELLED.value
    return FinishReason.ERROR.value


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
    """Embeddings run in this process, i.e. in the gateway's ``region`` (residency: a caller
    whose regions exclude it gets 403 ``region_not_allowed``, as for generation)."""

    def __init__(
        self,
        models: ModelRegistry,
        meter: Meter,
        metrics: Metrics,
        *,
        region: str = "local",
        jurisdiction: Callable[[], str] = lambda: "",
    ) -> None:
        self.models = models
        self.meter = meter
        self.metrics = metrics
        self.region = region
        self.jurisdiction = jurisdiction  # the gateway region's, as the live topology says

    def engine(self, model_id: str) -> EmbeddingEngine:
        """The replica serving embedding model ``model_id``.

        Raises:
            ModelNotFoundError / ServiceUnavailableError: unknown or still loading.
            InvalidRequestError: the model exists but does not create embeddings.
        """
        engine = self.models.get(model_id)
        if EMBEDDINGS not in engine.card.capabilities or not isinstance(engine, EmbeddingEngine):
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
            PermissionDeniedError: the key may not use this model or this region (403).
            ModelNotFoundError, ServiceUnavailableError, EngineError.
            RateLimitError, QuotaExceededError: a limit of the workspace or key (429).
        """
        if not principal.may_use_model(model):
            raise PermissionDeniedError(
                f"This API key may not use the model '{model}'.",
                param="model",
                code="model_not_allowed",
            )
        residency = RoutingHints(
            allowed_regions=principal.allowed_regions,
            allowed_jurisdictions=principal.allowed_jurisdictions,
        )
        if not residency.allows(self.region, self.jurisdiction()):
            raise PermissionDeniedError(
                f"The model '{model}' is not deployed in any region this API key may use.",
                param="model",
                code="region_not_allowed",
            )
        engine = self.engine(model)
        ctx.response_headers["x-modelgrid-region"] = self.region
        texts = [x for x in inputs if isinstance(x, str)]
        ids = [x for x in inputs if isinstance(x, list)]
        if ids:
            texts = await engine.decode(ids)
        for text in texts:  # an unpaired surrogate raises UnicodeEncodeError: a 400 at the edge
            text.encode("utf-8")
        if dimensions is not None and dimensions != engine.dimensions:
            raise UnsupportedParameterError(
                f"The model '{model}' returns {engine.dimensions}-dimensional vectors and "
                f"cannot shorten them: '{dimensions_param}' must be {engine.dimensions} or "
                "omitted.",
                param=dimensions_param,
            )
        counts = await engine.count_tokens(texts)
        check_lengths(counts, engine.max_input_tokens, single=single)
        tokens = sum(counts)
        admission = await self.meter.admit(
            principal, ctx.request_id, tokens, model=model, region=self.region
        )
        if admission is not None:
            ctx.response_headers.update(admission.headers())
        result = await self._embed(principal, admission, engine, texts, tokens, model, ctx)
        return result.vectors, tokens

    async def _embed(
        self,
        principal: Principal,
        admission: Admission | None,
        engine: EmbeddingEngine,
        texts: list[str],
        tokens: int,
        model: str,
        ctx: CallContext,
    ) -> Embeddings:
        status = 200
        self.metrics.of(model).running.inc()
        try:
            return await engine.embed(texts)
        except asyncio.CancelledError:
            status = STATUS_CLIENT_CLOSED
            raise
        except ModelgridError as exc:
            status = exc.status
            raise
        except BaseException:
            status = 500
            raise
        finally:
            self.metrics.of(model).running.dec()
            self._record(principal, admission, model, ctx, status, tokens)

    def _record(
        self,
        principal: Principal,
        admission: Admission | None,
        model: str,
        ctx: CallContext,
        status: int,
        tokens: int,
    ) -> None:
        total_s = time.perf_counter() - ctx.started
        self.meter.finish(
            principal,
            [admission] if admission is not None else [],
            UsageEvent(
                request_id=ctx.request_id,
                client_request_id=ctx.client_request_id,
                api_key_id=principal.key_id,
                workspace_id=principal.workspace_id,
                model=model,
                endpoint=ENDPOINT,
                prompt_tokens=tokens,
                completion_tokens=0,
                ttft_ms=None,
                total_ms=round(total_s * 1000),
                status=status,
                finish_reason=_finish_reason(status),
                created_at=now_utc(),
                region=self.region,
            ),
        )
        series = self.metrics.of(model)
        series.prompt_tokens.inc(tokens)
        series.e2e.observe(total_s)


__all__ = ["ENDPOINT", "EmbeddingService", "check_lengths"]
