"""A scripted engine for testing the layers above engines (serving, tenancy, api).

It "tokenizes" by whitespace-separated words and replays a fixed reply word by word, so tests
can assert exact token counts and texts without a model. The reply goes through the same output
assembly as the real engines (``engines.output``): a reply written in Qwen's tool-call format
becomes function calls when the request declares that function. With ``logprobs`` each word
gets log probability -0.5 and the alternatives ``alt1``, ``alt2``… at -1.5, -2.5…
``tokenize`` gives each word an id (in order of first sight, from ``FIRST_TOKEN_ID``: the
same calls on a fresh engine give the same ids), so it counts what ``prepare`` counts;
``detokenize`` joins the words of known ids with spaces. Never used as the product's engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence

from modelgrid.core.errors import ContextLengthExceededError, EngineError, InvalidRequestError
from modelgrid.core.types import Delta, FinishReason, InferenceRequest, RoutingHints, TokenLogprob
from modelgrid.engines.base import PREPARED, ModelCard, PreparedRequest, TokenizeOptions
from modelgrid.engines.output import ChoiceOutput

FIRST_TOKEN_ID = 1000


def prompt_words(request: InferenceRequest) -> list[str]:
    """The fake's "tokens" of a request: the words of its prompt or its messages' contents."""
    text = request.prompt or " ".join((m.content or "") for m in request.messages or [])
    return text.split()


class FakeEngine:
    """Replays ``reply`` one word (token) at a time.

    Args:
        model_id: Served id.
        reply: The text every choice generates.
        context_length: Window used for the context check.
        token_delay_s: Sleep between tokens (to test cancellation and TTFT).
        fail_after_tokens: Raise ``EngineError`` after this many tokens (mid-stream failure).
    """

    def __init__(
        self,
        model_id: str = "fake-model",
        reply: str = "Paris is the capital of France.",
        *,
        context_length: int = 64,
        token_delay_s: float = 0.0,
        fail_after_tokens: int | None = None,
    ) -> None:
        self.card = ModelCard(model_id, "modelgrid", int(time.time()), context_length)
        self.reply = reply
        self.token_delay_s = token_delay_s
        self.fail_after_tokens = fail_after_tokens
        self.cancelled = 0
        self.completed = 0
        self.vocabulary: dict[str, int] = {}
        self.words: dict[int, str] = {}

    @property
    def ready(self) -> bool:
        return True

    @property
    def queue_depth(self) -> int:
        return 0

    async def start(self) -> None:
        return None

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        n_prompt = len(prompt_words(request))
        wanted = request.sampling.max_tokens
        if n_prompt + (wanted or 0) > self.card.context_length:
            raise ContextLengthExceededError("Too long for the fake model.", param="messages")
        max_new = wanted if wanted is not None else self.card.context_length - n_prompt
        return PreparedRequest(request, n_prompt, max_new)

    async def stream(self, prepared: PreparedRequest) -> AsyncGenerator[Delta, None]:
        words = self.reply.split(" ")
        sampling = prepared.request.sampling
        try:
            for index in range(prepared.request.n):
                out = ChoiceOutput(index, prepared.request)
                finish = FinishReason.STOP
                for i, word in enumerate(words):
                    if out.produced >= prepared.max_new_tokens:
                        finish = FinishReason.LENGTH
                        break
                    if (
                        self.fail_after_tokens is not None
                        and out.produced >= self.fail_after_tokens
                    ):
                        raise EngineError("The fake engine failed on purpose.")
                    if self.token_delay_s:
                        await asyncio.sleep(self.token_delay_s)
                    piece = word if i == 0 else " " + word
                    lp = _logprob(piece, sampling.top_logprobs) if sampling.logprobs else None
                    for delta in out.token(piece.encode(), lp):
                        yield delta
                    if out.stopped:
                        break
                for delta in out.finish(finish):
                    yield delta
            self.completed += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise

    async def tokenize(
        self, request: InferenceRequest, options: TokenizeOptions = PREPARED
    ) -> list[int]:
        ids = []
        for word in prompt_words(request):
            if word not in self.vocabulary:
                self.vocabulary[word] = FIRST_TOKEN_ID + len(self.vocabulary)
                self.words[self.vocabulary[word]] = word
            ids.append(self.vocabulary[word])
        return ids

    async def detokenize(self, tokens: Sequence[int], routing: RoutingHints | None = None) -> str:
        unknown = next((t for t in tokens if t not in self.words), None)
        if unknown is not None:
            raise InvalidRequestError(
                f"Token id {unknown} is outside the fake model's vocabulary.", param="tokens"
            )
        return " ".join(self.words[t] for t in tokens)

    async def aclose(self) -> None:
        return None


def _logprob(piece: str, top: int) -> TokenLogprob:
    alternatives = [TokenLogprob(piece, piece.encode(), -0.5)]
    alternatives += [TokenLogprob(f"alt{k}", f"alt{k}".encode(), -0.5 - k) for k in range(1, top)]
    return TokenLogprob(piece, piece.encode(), -0.5, tuple(alternatives[:top]))


__all__ = ["FakeEngine"]
