"""The port serving meters through, and the meters that are not the tenancy service.

Serving admits a request before its first byte and records its usage when it ends
(``serving.generation``); it needs only these two calls, so it declares them here (the
consumer owns the interface) and the composition root passes an implementation in:

- ``tenancy.TenancyService``: rate limits, budgets, the usage ledger (the gateway);
- ``NullMeter``: admits everything, records nothing (an engine worker behind a gateway, which
  meters);
- ``PromptGroupMeter``: collects the admissions and usage of the prompts of one multi-prompt
  request, which its owner then admits and records as one (``serving.completions``; batch
  jobs next).
"""

from __future__ import annotations

from typing import Protocol

from modelgrid.tenancy.events import UsageEvent
from modelgrid.tenancy.ratelimit import Admission
from modelgrid.tenancy.service import Principal


class Meter(Protocol):
    async def admit(
        self,
        principal: Principal,
        request_id: str,
        tokens: int,
        *,
        model: str | None = None,
        region: str | None = None,
    ) -> Admission | None:
        """Admit a request that may use up to ``tokens`` tokens of ``model`` in ``region``
        (its worst case, reserved against budgets until ``finish``), before its first byte.

        Raises:
            RateLimitError, QuotaExceededError: a limit or budget of the caller (429).
        """
        ...

    def finish(self, principal: Principal, admissions: list[Admission], event: UsageEvent) -> None:
        """Record the request's usage (exactly once) and settle its admissions."""
        ...


class NullMeter:
    """Admits everything, records nothing."""

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
        return None


class PromptGroupMeter:
    """Notes each prompt's token estimate instead of admitting it, and keeps each prompt's
    usage event instead of recording it; the request is then admitted for ``sum(estimates)``
    and its merged event recorded, once, by its owner."""

    def __init__(self) -> None:
        self.estimates: list[int] = []
        self.events: list[UsageEvent] = []
        self.model: str | None = None
        self.region: str | None = None

    async def admit(
        self,
        principal: Principal,
        request_id: str,
        tokens: int,
        *,
        model: str | None = None,
        region: str | None = None,
    ) -> Admission | None:
        self.estimates.append(tokens)
        self.model, self.region = model, region
        return None

    def finish(self, principal: Principal, admissions: list[Admission], event: UsageEvent) -> None:
        self.events.append(event)


__all__ = ["Meter", "NullMeter", "PromptGroupMeter"]
