"""One line of a batch job, run through the same services as an online request.

A line (``{"custom_id", "method", "url", "body"}``, OpenAI's Batch API) is answered by the
chat, completions or embeddings service exactly as a request to ``url`` would be — same
validation, routing, residency and usage — but metered by a ``BatchMeter``:

- admission against the caller's **budgets only** (monthly money and tokens, with the
  worst case reserved as online), never its RPM, TPM or concurrency: a batch fills idle
  capacity at its own pace and must not eat the key's online rate;
- the usage event priced at the **batch rate** (``tenancy.pricing``: ``batch_percent`` of the
  price-book entry) and kept for the runner, which writes it in the transaction that stores
  the line's result (``jobs.batch_runner``): a line is billed once, when it finishes;
- a line cut short (preempted by online traffic, or its batch cancelled: status 499) is free
  and settles its reservation at zero.

``BatchLines.run`` returns the response line's ``response`` part (``status_code``, ``body``)
and the priced usage, for the runner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from modelgrid.core.errors import InvalidRequestError, ModelgridError
from modelgrid.core.types import CallContext
from modelgrid.protocol.openai.completions import CompletionRequest
from modelgrid.protocol.openai.embeddings import EmbeddingRequest
from modelgrid.protocol.openai.errors import error_body, errors_message
from modelgrid.protocol.openai.models import ChatCompletionRequest
from modelgrid.serving.chat import ChatService
from modelgrid.serving.completions import CompletionService
from modelgrid.serving.embeddings import EmbeddingService
from modelgrid.serving.metered import STATUS_CLIENT_CLOSED
from modelgrid.tenancy.events import UsageEvent
from modelgrid.tenancy.ratelimit import Admission
from modelgrid.tenancy.service import Principal, TenancyService

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
ENDPOINTS = (CHAT, COMPLETIONS, EMBEDDINGS)


def budgets_only(principal: Principal) -> Principal:
    """``principal`` with only its monthly budgets as limits (no RPM, TPM, concurrency)."""
    levels = tuple(
        replace(lim, rpm=None, tpm=None, concurrency=None)
        for lim in principal.limits
        if lim.monthly_budget_micros is not None or lim.monthly_token_budget is not None
    )
    return replace(principal, limits=levels)


class BudgetsOnlyMeter:
    """Admission of background work (batch lines, knowledge indexing): against the key's
    budgets only (``budgets_only``), never its online RPM, TPM or concurrency. Subclasses
    say how a finished call is settled (``finish``).

    Args:
        tenancy: Admission, pricing and settlement.
    """

    def __init__(self, tenancy: TenancyService) -> None:
        self._tenancy = tenancy

    async def admit(
        self,
        principal: Principal,
        request_id: str,
        tokens: int,
        *,
        model: str | None = None,
        region: str | None = None,
    ) -> Admission | None:
        return await self._tenancy.admit(
            budgets_only(principal), request_id, tokens, model=model, region=region
        )


class BatchMeter(BudgetsOnlyMeter):
    """The ``serving.meter.Meter`` of batch lines (see the module docstring)."""

    def __init__(self, tenancy: TenancyService) -> None:
        super().__init__(tenancy)
        self._events: dict[str, UsageEvent] = {}

    def finish(self, principal: Principal, admissions: list[Admission], event: UsageEvent) -> None:
        if event.status == STATUS_CLIENT_CLOSED:  # preempted or cancelled: free, retried
            free = replace(event, prompt_tokens=0, cached_tokens=0, completion_tokens=0)
            self._tenancy.settle(admissions, free)
            return
        priced = self._tenancy.priced(event, batch=True)
        self._tenancy.settle(admissions, priced)
        self._events[event.request_id] = priced

    def take(self, request_id: str) -> UsageEvent | None:
        """The priced usage of a finished line (once), or ``None`` if it used nothing."""
        return self._events.pop(request_id, None)


@dataclass(frozen=True, slots=True)
class LineResult:
    """A line's answer: what an online request would have got, and its batch-priced usage."""

    status_code: int
    body: dict[str, Any]
    usage: UsageEvent | None

    @property
    def ok(self) -> bool:
        return self.status_code == 200


class BatchLines:
    """Runs batch lines through services built over a ``BatchMeter``.

    Args:
        chat / completions / embeddings: The services, metered by ``meter``.
        meter: Their meter.
    """

    def __init__(
        self,
        chat: ChatService,
        completions: CompletionService,
        embeddings: EmbeddingService,
        meter: BatchMeter,
    ) -> None:
        self.chat = chat
        self.completions = completions
        self.embeddings = embeddings
        self.meter = meter

    async def run(
        self, principal: Principal, url: str, body: dict[str, Any], request_id: str
    ) -> LineResult:
        """Answer one line as ``POST url`` with ``body`` would be answered.

        Returns:
            The status and body (OpenAI's error object for a failure) and the usage.

        Raises:
            asyncio.CancelledError: the line was preempted or its batch cancelled (its usage
                is free; the runner runs it again or writes it off).
        """
        ctx = CallContext(
            request_id=request_id,
            client_request_id=None,
            started=time.perf_counter(),
            preemptible=True,
        )
        try:
            answer = await self._answer(principal, url, body, ctx)
        except ValidationError as exc:
            message, param = errors_message(exc.errors(include_url=False))
            return self._failed(InvalidRequestError(message, param=param), request_id)
        except ModelgridError as exc:
            return self._failed(exc, request_id)
        return LineResult(200, answer, self.meter.take(request_id))

    async def _answer(
        self, principal: Principal, url: str, body: dict[str, Any], ctx: CallContext
    ) -> dict[str, Any]:
        if body.get("stream"):
            raise InvalidRequestError("A batch line cannot stream: drop 'stream'.", param="stream")
        if url == CHAT:
            chat = ChatCompletionRequest.model_validate(body)
            return await self.chat.complete(await self.chat.open(principal, chat, ctx))
        if url == COMPLETIONS:
            text = CompletionRequest.model_validate(body)
            return await self.completions.complete(
                await self.completions.open(principal, text, ctx)
            )
        if url == EMBEDDINGS:
            return await self.embeddings.create(
                principal, EmbeddingRequest.model_validate(body), ctx
            )
        raise InvalidRequestError(
            f"A batch line's url must be one of {', '.join(ENDPOINTS)}.", param="url"
        )

    def _failed(self, exc: ModelgridError, request_id: str) -> LineResult:
        body = error_body(exc.message, exc.type, exc.param, exc.code)
        return LineResult(exc.status, body, self.meter.take(request_id))


__all__ = ["ENDPOINTS", "BatchLines", "BatchMeter", "LineResult", "budgets_only"]
