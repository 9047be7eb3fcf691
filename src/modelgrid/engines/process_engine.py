"""``ProcessEngine``: the ``Engine`` protocol over a supervised engine process.

The gateway talks to its own ``modelgrid engine`` child (``engines.process``) the way it talks
to any OpenAI-compatible replica (``engines.upstream``: pooled HTTP on loopback, the child's
token), with what only a supervisor knows added:

- **Always streamed.** Every call to the child streams (``stream: true`` with usage), also for
  a non-streamed client request: each token is progress the supervisor can see (no token for
  ``hang_timeout_s`` while a request waits: the child is killed as hung), and a request cut
  short still has its tokens counted.
- **Restarts are waited out.** A request that finds the child restarting, or whose
  connection the dying child dropped before any token, waits for the next child
  (``restart_wait_s`` at most) and is sent again: it succeeds on the restart. Past that it is
  a 503 with ``Retry-After`` (``retryable``: a router may try another replica).
- **Death mid-stream** ends the stream with an error (serving sends an error event; usage is
  recorded for the tokens that came), never a silent cut.

Token counts come from the child's usage chunk: ``prepare`` can only estimate the prompt (for
admission; ``engines.upstream``), the exact counts replace the estimate when the answer ends.
``tokenize`` / ``detokenize`` ask the child's own ``/tokenize`` and ``/detokenize`` (the model's
tokenizer and chat template), waiting out a restart the same way; they are idempotent, so a
call the dying child dropped is sent again to the next one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from modelgrid.core.errors import (
    EngineDiedError,
    UpstreamError,
    UpstreamTimeoutError,
)
from modelgrid.core.types import Delta, InferenceRequest, RoutingHints
from modelgrid.engines.base import PREPARED, ModelCard, PreparedRequest, TokenizeOptions
from modelgrid.engines.process import EngineProcess
from modelgrid.engines.upstream import UpstreamEngine

T = TypeVar("T")


class ProcessEngine:
    """A model served by a supervised child process (see the module docstring).

    Args:
        process: The supervisor of the child.
        card: What ``/v1/models`` shows (the child's window is ``card.context_length``).
        restart_wait_s: Longest a request waits for a restarting child.
    """

    def __init__(
        self, process: EngineProcess, card: ModelCard, *, restart_wait_s: float = 15.0
    ) -> None:
        self.process = process
        self.card = card
        self.restart_wait_s = restart_wait_s
        self._client = self._client_for(process.port)
        self._waiting = 0  # sent, no token yet
        self._overhead = 0  # prompt tokens the estimate misses (``prepare``)
        self._streams = 0
        self._progress_at = time.monotonic()
        process.stalled_s = self._stalled_s

    def _client_for(self, port: int) -> UpstreamEngine:
        self._port = port
        return UpstreamEngine(
            self.card.model_id,
            self.process.base_url,
            api_key=self.process.token,
            read_timeout_s=None,  # hangs are the supervisor's to judge (``hang_timeout_s``)
            context_length=self.card.context_length,
            owned_by=self.card.owned_by,
        )

    async def _follow_child(self) -> None:
        """A child that never got ready makes the next one take a new port: talk to it
        there."""
        if self._port != self.process.port:
            old, self._client = self._client, self._client_for(self.process.port)
            await self._client.start()
            await old.aclose()

    async def _follow_port(self, prepared: PreparedRequest) -> None:
        """``_follow_child``, and re-encode a request prepared for the old port."""
        await self._follow_child()
        if prepared.payload.url.port != self._port:
            prepared.payload = self._client.prepare(replace(prepared.request, stream=True)).payload

    @property
    def ready(self) -> bool:
        """Ready, or restarting after a death that is not part of a crash loop (requests
        wait for the restart)."""
        return self.process.serving

    @property
    def queue_depth(self) -> int:
        return self._waiting

    async def start(self) -> None:
        """Start the child and wait until it serves.

        Raises:
            EngineError: the first children died or never got ready (``engines.process``).
        """
        await self._client.start()
        await self.process.start()

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        """Estimate the prompt and encode a streamed call to the child (no I/O).

        The estimate (``engines.upstream``: characters / 4 and a chat overhead) misses the
        tokens the model's chat template adds (Qwen's default system prompt: about 20). So
        the largest shortfall seen so far against the child's exact counts is added to it:
        admission and budget reservations then hold a prompt's real size after the first
        answer."""
        prepared = self._client.prepare(replace(request, stream=True))
        prepared.request = request
        prepared.prompt_tokens += self._overhead
        return prepared

    def _learn(self, prepared: PreparedRequest, estimate: int) -> None:
        """Fold the child's exact prompt count into the estimate's overhead."""
        if not prepared.prompt_tokens_estimated:
            self._overhead = max(self._overhead, prepared.prompt_tokens - estimate)

    def _stalled_s(self) -> float:
        """Seconds without a token while requests wait for one (0 when none waits)."""
        return time.monotonic() - self._progress_at if self._streams else 0.0

    async def _await_child(self) -> int:
        """The incarnation of a ready child, waiting for a restart if need be.

        Raises:
            EngineRestartingError: none is ready within ``restart_wait_s``.
        """
        if not await self.process.wait_ready(self.restart_wait_s):
            raise self.process.restarting_error()
        return self.process.incarnation

    async def stream(self, prepared: PreparedRequest) -> AsyncGenerator[Delta, None]:
        """The child's deltas; one resend if the child died before the first token.

        Raises:
            EngineRestartingError: no child ready within ``restart_wait_s`` (503, retryable).
            EngineDiedError: the child died while generating (after the first delta).
            UpstreamError: the child failed otherwise.
            InvalidRequestError, ContextLengthExceededError: the child refused the request.
        """
        self._streams += 1
        self._waiting += 1
        waiting = True
        estimate = prepared.prompt_tokens - self._overhead  # the plain estimate
        if self._streams == 1:
            self._progress_at = time.monotonic()
        try:
            for attempt in (1, 2):
                incarnation = await self._await_child()
                await self._follow_port(prepared)
                try:
                    async for delta in self._client.stream(prepared):
                        self._progress_at = time.monotonic()
                        if waiting:
                            waiting = False
                            self._waiting -= 1
                        yield delta
                    return
                except (UpstreamError, UpstreamTimeoutError) as exc:
                    if not await self.process.died_since(incarnation):
                        raise
                    if not waiting:
                        raise EngineDiedError(
                            f"The engine process of '{self.card.model_id}' died while "
                            "generating; it is restarting."
                        ) from exc
                    if attempt == 2:
                        raise self.process.restarting_error() from exc
        finally:
            self._streams -= 1
            if waiting:
                self._waiting -= 1
            self._learn(prepared, estimate)

    async def tokenize(
        self, request: InferenceRequest, options: TokenizeOptions = PREPARED
    ) -> list[int]:
        """The child's ``/tokenize`` (see the module docstring).

        Raises:
            EngineRestartingError: no child ready within ``restart_wait_s`` (503).
            InvalidRequestError, UpstreamError: the child refused or failed.
        """
        return await self._idempotent(lambda: self._client.tokenize(request, options))

    async def detokenize(self, tokens: Sequence[int], routing: RoutingHints | None = None) -> str:
        """The child's ``/detokenize``; raises as ``tokenize``."""
        return await self._idempotent(lambda: self._client.detokenize(tokens))

    async def _idempotent(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` on a ready child, once more on the next child if this one died."""
        for attempt in (1, 2):
            incarnation = await self._await_child()
            await self._follow_child()
            try:
                return await call()
            except (UpstreamError, UpstreamTimeoutError) as exc:
                if not await self.process.died_since(incarnation):
                    raise
                if attempt == 2:
                    raise self.process.restarting_error() from exc
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._client.aclose()
        await self.process.aclose()


__all__ = ["ProcessEngine"]
