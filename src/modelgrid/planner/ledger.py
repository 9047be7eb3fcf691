"""Demand measured from the usage ledger (``tenancy.demand``) as the planner's inputs: rates
by hour of day (a month's count in an hour of the day over the month's seconds in it),
empirical request shapes, gamma-renewal arrivals with the measured burstiness, and the
workspaces' residency rules."""

from __future__ import annotations

from modelgrid.planner.scenario import Demand, Residency
from modelgrid.planner.workload import ArrivalSpec, RequestShape, TokenDist
from modelgrid.tenancy.demand import LedgerDemand


def demand_rows(ledger: LedgerDemand, scale: float = 1.0) -> tuple[Demand, ...]:
    """Mean requests per second in each hour of the day over the month (times ``scale``)."""
    seconds = ledger.days * 3600.0
    return tuple(
        Demand(ws, region, model, hour, scale * count / seconds)
        for (ws, region, model, hour), count in sorted(ledger.counts.items())
    )


def shapes(ledger: LedgerDemand) -> dict[str, RequestShape]:
    """The measured prompt (uncached) and output lengths of each model."""
    return {
        model: RequestShape(
            prompt=TokenDist.empirical(prompts),
            output=TokenDist.empirical(ledger.output_tokens[model]),
        )
        for model, prompts in ledger.prompt_tokens.items()
        if prompts
    }


def arrivals(ledger: LedgerDemand) -> dict[tuple[str, str], ArrivalSpec]:
    """Gamma-renewal arrivals with each (region, model)'s measured gap SCV (Poisson when it
    is within 10 % of 1; clipped to 0.2 to 20)."""
    out = {}
    for key, scv in ledger.gap_scv.items():
        if abs(scv - 1) <= 0.1:
            out[key] = ArrivalSpec()
        else:
            out[key] = ArrivalSpec(kind="gamma", ca2=min(20.0, max(0.2, scv)))
    return out


def residency(ledger: LedgerDemand) -> dict[str, Residency]:
    return {
        w.name: Residency(
            name=w.name,
            home_region=w.home_region,
            allowed_regions=w.allowed_regions,
            allowed_jurisdictions=w.allowed_jurisdictions,
        )
        for w in ledger.workspaces
    }


__all__ = ["arrivals", "demand_rows", "residency", "shapes"]
