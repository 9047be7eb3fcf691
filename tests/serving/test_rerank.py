"""Pointwise re-ranking by a chat model (``serving.rerank``): P(yes) from the first token's
log probabilities, the prompt, and one metered request per passage (the scripted
``FakeEngine`` below serving)."""

from __future__ import annotations

import asyncio
import math

from modelgrid.core.types import CallContext, ChatMessage, TokenLogprob
from modelgrid.engines.fake import FakeEngine
from modelgrid.serving.generation import GenerationService
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.serving.rerank import (
    INSTRUCT,
    RERANK_ENDPOINT,
    SYSTEM,
    ChatReranker,
    reorder,
    rerank_messages,
    yes_probability,
)
from modelgrid.tenancy.events import UsageEvent
from modelgrid.tenancy.ratelimit import Admission
from modelgrid.tenancy.service import Principal


def lp(token: str, logprob: float, *top: tuple[str, float]) -> TokenLogprob:
    alts = tuple(TokenLogprob(t, t.encode(), v) for t, v in top)
    return TokenLogprob(token, token.encode(), logprob, alts)


def test_yes_probability_is_the_softmax_over_yes_and_no() -> None:
    first = lp("yes", -0.2, ("yes", -0.2), (" No", -1.8), ("maybe", -4.0))
    assert yes_probability(first) == 1 / (1 + math.exp(-1.8 + 0.2))
    # "no" chosen, "Yes" an alternative (case and spaces ignored)
    assert yes_probability(lp("no", -0.1, ("no", -0.1), (" Yes", -2.4))) == 1 / (
        1 + math.exp(-0.1 + 2.4)
    )
    # a word missing from the alternatives gets the least likely one's log probability
    assert yes_probability(lp("yes", -0.5, ("yes", -0.5), ("x", -7.5))) == 1 / (1 + math.exp(-7.0))
    assert yes_probability(lp("hello", -0.3, ("hi", -2.0))) == 0.5  # neither word


def test_prompt_and_order() -> None:
    assert rerank_messages(" why? ", " A passage. ") == [
        ChatMessage("system", SYSTEM),
        ChatMessage("user", f"<Instruct>: {INSTRUCT}\n<Query>: why?\n<Document>: A passage."),
    ]
    long = rerank_messages("q", "w" * 5000)[1].content or ""
    assert long.endswith("<Document>: " + "w" * 2000)
    assert reorder([0.2, 0.9, 0.2, 0.5]) == [1, 3, 0, 2]  # ties keep the fused order


class Recording:
    """A meter that admits everything and keeps each usage event."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    async def admit(
        self,
        principal: Principal,
        request_id: str,
        tokens: int,
        *,
        model: str | None = None,
        region: str | None = None,
    ) -> Admission | None:
        return None

    def finish(self, principal: Principal, admissions: list[Admission], event: UsageEvent) -> None:
        self.events.append(event)


def test_each_passage_is_one_metered_request() -> None:
    meter = Recording()
    engine = FakeEngine("judge", reply="yes", context_length=4096)
    service = GenerationService(ModelRegistry([engine]), meter, Metrics())
    reranker = ChatReranker(service, "judge")
    principal = Principal(key_id="k", workspace_id="w", role="tenant", name="t")
    ctx = CallContext(request_id="req-caller", client_request_id=None, started=0.0)
    passages = ["refunds within fourteen days", "parcels leave Rotterdam"]
    judged = asyncio.run(reranker.judge(principal, "when refund?", passages, ctx))
    # the fake answers "yes" at -0.5; its 20 alternatives: "yes", then alt1..alt19 at
    # -1.5..-19.5, so "no" counts as -19.5
    assert judged.scores == [1 / (1 + math.exp(-19.5 + 0.5))] * 2
    words = [len(" ".join(m.content or "" for m in rerank_messages("when refund?", p)).split())
             for p in passages]  # fmt: skip
    assert (judged.prompt_tokens, judged.completion_tokens) == (sum(words), 2)
    assert [(e.endpoint, e.model, e.status) for e in meter.events] == [
        (RERANK_ENDPOINT, "judge", 200)
    ] * 2
    assert [e.prompt_tokens for e in meter.events] == words
    ids = {e.request_id for e in meter.events}
    assert len(ids) == 2 and "req-caller" not in ids  # requests of their own
