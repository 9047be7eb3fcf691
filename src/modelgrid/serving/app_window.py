"""Whether an app call can fit its model's context window, before anything is billed.

An app call with knowledge bases bills work before its generation: the query's embedding,
the model's query rewrite, its re-ranking. A call whose prompt cannot fit the window even
without the passages must be refused before any of it, so ``refuse_unfit`` counts the prompt
as it is before retrieval (the instructions with the client's system text and the recalled
memory, the session's history, the bare user turn: the final prompt holds all of it and the
passages) in the model's own tokens (``Engine.tokenize``, on a replica the caller may use,
the ids ``prepare`` feeds the model) and refuses it when those tokens and the answer's
``max_tokens`` (1 when not set: the model must produce one token) exceed the window, the
rule of ``engines.llamacpp``'s ``prepare``. Counting is not generating: nothing is admitted
or metered.

It only ever adds that refusal: a model whose tokens cannot be counted (an upstream without
``/tokenize``, a key that may not use the model, no replica now) is left to
``Generation.open`` and the replica, which check the final prompt, passages included, as
they do for every call.
"""

from __future__ import annotations

import logging

from modelgrid.core.errors import ContextLengthExceededError, ModelgridError
from modelgrid.core.types import CallContext, InferenceRequest
from modelgrid.serving.metered import routing_hints
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.service import Principal

log = logging.getLogger(__name__)


async def refuse_unfit(
    models: ModelRegistry,
    principal: Principal,
    request: InferenceRequest,
    ctx: CallContext,
    *,
    param: str,
) -> None:
    """Refuse ``request`` (the app's prompt before retrieval) if it cannot fit the window.

    Args:
        models: The served models.
        principal: The caller (its model scope and regions: where the prompt is tokenized).
        request: The prompt without the passages; ``sampling.max_tokens`` the answer's limit.
        ctx: The call's context (its requested region).
        param: The input named by the error (``input.prompt`` / ``input.messages``).

    Raises:
        ContextLengthExceededError: prompt tokens + ``max_tokens`` (or 1) > the window, or a
            text the engine refuses to tokenize as far too long for it.
    """
    if not principal.may_use_model(request.model):
        return  # Generation.open refuses it (403), counting nothing
    try:
        engine = models.get(request.model)
        request.routing = routing_hints(principal, ctx)
        n_prompt = len(await engine.tokenize(request))
        window = engine.card.context_length
    except ContextLengthExceededError as exc:
        raise exc.at(param) from None
    except ModelgridError as exc:  # not countable now: the final checks decide
        log.debug("app prompt not counted before retrieval: %s", exc.message)
        return
    wanted = request.sampling.max_tokens or 1
    if n_prompt + wanted > window:
        raise ContextLengthExceededError(
            f"This model's maximum context length is {window} tokens. However, the app's "
            f"prompt has {n_prompt + wanted} tokens ({n_prompt} before the knowledge bases' "
            f"passages are added + {wanted} to answer). Please reduce the length of the "
            "input, the session's history or max_tokens.",
            param=param,
        )


__all__ = ["refuse_unfit"]
