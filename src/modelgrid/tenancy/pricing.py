"""The price book: per-model (optionally per-region) prices per 1M tokens, by effective date.

A request is priced with the entry in force when it started: the latest ``effective_from``
not after the request time, preferring an entry for the request's region over a region-less
one. Entries are append-only, so a price change never rewrites past bills.

Cost (integer micro-units of the entry's currency), per request::

    cost_micros = round_half_up(( (prompt - cached) * input
                                  + cached * cached_input
                                  + completion * output ) / 1_000_000)

with prices in micro-units per 1M tokens. A batch line (``/v1/batches``) pays the entry's
``batch_percent`` of that (50 unless the entry says otherwise; OpenAI's and Model Studio's
batch discount), still rounded once::

    cost_micros = round_half_up(numerator * batch_percent / (100 * 1_000_000))

Rounding happens once per request, and invoices sum the stored ``cost_micros``, so an invoice
total equals the sum of its ledger rows exactly.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PriceEntry:
    price_id: int
    model: str
    region: str | None
    currency: str
    input_micros_per_1m: int
    cached_input_micros_per_1m: int
    output_micros_per_1m: int
    effective_from: datetime
    batch_percent: int = 50


@dataclass(frozen=True, slots=True)
class Cost:
    cost_micros: int
    currency: str | None
    price_id: int | None


FREE = Cost(0, None, None)


def cost_micros(
    entry: PriceEntry,
    prompt_tokens: int,
    cached_tokens: int,
    completion_tokens: int,
    *,
    batch: bool = False,
) -> int:
    """Integer micro-units for one request, or one batch line with ``batch`` (see the module
    docstring for the formula)."""
    cached = min(max(cached_tokens, 0), prompt_tokens)
    numerator = (
        (prompt_tokens - cached) * entry.input_micros_per_1m
        + cached * entry.cached_input_micros_per_1m
        + completion_tokens * entry.output_micros_per_1m
    )
    if batch:
        return (numerator * entry.batch_percent + 50_000_000) // 100_000_000
    return (numerator + 500_000) // 1_000_000


class PriceBook:
    """An in-memory snapshot of the ``prices`` table, indexed for O(log n) lookups."""

    def __init__(self, entries: Iterable[PriceEntry] = ()) -> None:
        self._by_key: dict[tuple[str, str | None], list[PriceEntry]] = {}
        for e in sorted(entries, key=lambda e: (e.effective_from, e.price_id)):
            self._by_key.setdefault((e.model, e.region), []).append(e)
        self._starts = {k: [e.effective_from for e in v] for k, v in self._by_key.items()}

    def lookup(self, model: str, region: str | None, at: datetime) -> PriceEntry | None:
        """The entry in force for ``model`` in ``region`` at ``at`` (region-specific first)."""
        keys = [(model, region), (model, None)] if region is not None else [(model, None)]
        for key in keys:
            entries = self._by_key.get(key)
            if not entries:
                continue
            i = bisect.bisect_right(self._starts[key], at)
            if i:
                return entries[i - 1]
        return None

    def price(
        self,
        model: str,
        region: str | None,
        at: datetime,
        prompt: int,
        cached: int,
        completion: int,
        *,
        batch: bool = False,
    ) -> Cost:
        entry = self.lookup(model, region, at)
        if entry is None:
            return FREE
        micros = cost_micros(entry, prompt, cached, completion, batch=batch)
        return Cost(micros, entry.currency, entry.price_id)


__all__ = ["FREE", "Cost", "PriceBook", "PriceEntry", "cost_micros"]
