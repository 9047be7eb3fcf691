"""The engine interface every replica kind implements.

Serving talks to engines only through ``Engine``: ``prepare`` tokenizes and checks the context
window before any byte is sent, ``stream`` yields ``Delta``s, and cancelling the consumer of
``stream`` (client disconnect) stops generation promptly and frees the replica.
``tokenize`` / ``detokenize`` expose the model's own tokenizer and chat template (vLLM's
``/tokenize`` and ``/detokenize``, Anthropic's ``count_tokens``): an engine whose model runs
elsewhere asks that replica.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from modelgrid.core.types import Delta, InferenceRequest, RoutingHints, TokenizeOptions


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What ``/v1/models`` shows about a served model."""

    model_id: str
    owned_by: str
    created: int
    context_length: int
    capabilities: frozenset[str] = field(default_factory=lambda: frozenset({"chat"}))


@dataclass(slots=True)
class PreparedRequest:
    """A request after templating and tokenization.

    Attributes:
        request: The core request.
        prompt_tokens: Prompt length in the model's tokens: exact for engines that tokenize
            locally; an estimate (for admission) from engines that cannot, which report the
            exact count with ``report_prompt_tokens`` while streaming.
        max_new_tokens: Generation cap after fitting into the context window.
        payload: Engine-private data (token ids, rendered prompt).
        cached_prompt_tokens: Prompt tokens served from the replica's prefix cache, when the
            engine knows (priced at the cached-input rate).
        prompt_tokens_estimated: ``prompt_tokens`` is still an estimate.
    """

    request: InferenceRequest
    prompt_tokens: int
    max_new_tokens: int
    payload: Any = None
    cached_prompt_tokens: int = 0
    prompt_tokens_estimated: bool = False

    def report_prompt_tokens(self, prompt_tokens: int, cached_tokens: int = 0) -> None:
        """Replace the estimate with the replica's exact counts (from ``stream``, e.g. an
        upstream's final usage chunk); serving meters these."""
        self.prompt_tokens = prompt_tokens
        self.cached_prompt_tokens = cached_tokens
        self.prompt_tokens_estimated = False


PREPARED = TokenizeOptions()  # the tokens ``prepare`` feeds the model


@runtime_checkable
class Engine(Protocol):
    @property
    def card(self) -> ModelCard:
        """What ``/v1/models`` shows about the model."""
        ...

    @property
    def ready(self) -> bool:
        """True once weights are loaded and requests can be served."""
        ...

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the replica (not yet generating)."""
        ...

    async def start(self) -> None:
        """Load weights / connect. Idempotent."""
        ...

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        """Template and tokenize.

        Raises:
            ContextLengthExceededError: the prompt (plus ``max_tokens``) exceeds the window.
            InvalidRequestError: the messages cannot be rendered for this model.
        """
        ...

    def stream(self, prepared: PreparedRequest) -> AsyncGenerator[Delta, None]:
        """Generate all ``n`` choices, yielding deltas (choices one after another).

        Raises:
            EngineError: the engine failed while generating.
        """
        ...

    async def tokenize(
        self, request: InferenceRequest, options: TokenizeOptions = PREPARED
    ) -> list[int]:
        """The token ids of ``request``'s prompt in the model's own tokenizer: its messages
        (with its ``tools`` unless ``tool_choice`` is ``none``) through the chat template, or
        its raw ``prompt``; with ``PREPARED``, exactly the ids ``prepare`` would feed the
        model. ``request.routing``: where it may run (a routed engine's residency).

        Raises:
            InvalidRequestError: the messages cannot be rendered, or the model has no
                tokenizer to offer (an embedding model, an upstream without ``/tokenize``).
            ContextLengthExceededError: a text far too long to tokenize for the window.
            PermissionDeniedError, ServiceUnavailableError: residency, no replica (routed).
        """
        ...

    async def detokenize(self, tokens: Sequence[int], routing: RoutingHints | None = None) -> str:
        """The text of ``tokens`` (special tokens rendered as text, as vLLM's
        ``/detokenize`` does); ``routing`` as for ``tokenize``.

        Raises:
            InvalidRequestError: an id outside the vocabulary (param ``tokens``).
        """
        ...

    async def aclose(self) -> None: ...


class Probed(abc.ABC):
    """An engine whose model runs on a server the gateway does not supervise (an
    OpenAI-compatible upstream): the router checks it with ``health()`` between requests
    (``routing.health``), as it does ``upstream`` replicas, and opens its breaker when it fails.
    Engines the gateway runs itself, in its process or in a supervised child (``engines.
    process``), are not ``Probed``: their health is their ``ready``, and a child's death is
    the supervisor's to judge, not the breaker's."""

    @abc.abstractmethod
    async def health(self) -> bool:
        """Whether the replica answers now (one probe; never raises for a dead replica)."""


__all__ = ["PREPARED", "Engine", "ModelCard", "PreparedRequest", "Probed", "TokenizeOptions"]
