"""Tokenization with a served model's own tokenizer, framework-free: vLLM's ``/tokenize`` and
``/detokenize`` and Anthropic's ``count_tokens``.

The key's model scope is checked (403 ``model_not_allowed``, as for generation), then the
model's engine tokenizes under the caller's residency (``routing_hints``: a key limited to
some regions never has its text tokenized elsewhere; the routed engine picks the replica).
Nothing is admitted or metered: tokenization is not billed and leaves no usage record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelgrid.core.errors import PermissionDeniedError
from modelgrid.core.types import CallContext, InferenceRequest
from modelgrid.engines.base import PREPARED, TokenizeOptions
from modelgrid.serving.metered import routing_hints
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.service import Principal


@dataclass(frozen=True, slots=True)
class Tokens:
    """A prompt's token ids and the model's context window (``max_model_len``), in tokens."""

    ids: list[int]
    max_model_len: int


def check_scope(principal: Principal, model: str) -> None:
    """Raises ``PermissionDeniedError`` (403 ``model_not_allowed``) unless the key may use
    ``model``."""
    if not principal.may_use_model(model):
        raise PermissionDeniedError(
            f"This API key may not use the model '{model}'.",
            param="model",
            code="model_not_allowed",
        )


class TokenizeService:
    """Tokenization over the served models (see the module docstring)."""

    def __init__(self, models: ModelRegistry) -> None:
        self.models = models

    async def tokenize(
        self,
        principal: Principal,
        request: InferenceRequest,
        ctx: CallContext,
        options: TokenizeOptions = PREPARED,
    ) -> Tokens:
        """``request``'s prompt in its model's tokens (with ``PREPARED``: exactly those a
        generation of it would be fed, so their number is its prompt usage).

        Raises:
            PermissionDeniedError: the key may not use the model, or no allowed region (403).
            ModelNotFoundError, ServiceUnavailableError: unknown model (404), none ready (503).
            InvalidRequestError: the model cannot render or tokenize it (400).
        """
        check_scope(principal, request.model)
        engine = self.models.get(request.model)
        request.routing = routing_hints(principal, ctx)
        ids = await engine.tokenize(request, options)
        return Tokens(ids, engine.card.context_length)

    async def detokenize(
        self, principal: Principal, model: str, tokens: Sequence[int], ctx: CallContext
    ) -> str:
        """The text of ``tokens`` in ``model``'s vocabulary.

        Raises:
            InvalidRequestError: an id outside the vocabulary (param ``tokens``); else as
                ``tokenize``.
        """
        check_scope(principal, model)
        engine = self.models.get(model)
        return await engine.detokenize(tokens, routing_hints(principal, ctx))


__all__ = ["TokenizeService", "Tokens", "check_scope"]
