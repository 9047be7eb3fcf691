"""What the fleet must serve: request shapes (token distributions) and arrival processes.

A request's shape is its prompt and output lengths in tokens, each a ``TokenDist``: a fixed
number, a log-normal given by its mean and coefficient of variation, or the empirical values
measured from the usage ledger. Arrivals in a stream of one rate are a ``ArrivalSpec``:

- ``poisson``: exponential gaps (squared coefficient of variation ``ca2`` = 1);
- ``gamma``: a renewal process with gamma gaps of any ``ca2`` (> 1: bursty, < 1: smoother
  than Poisson); ``ca2`` is what ``modelgrid plan --from-usage`` measures from the ledger;
- ``mmpp``: a two-state Markov-modulated Poisson process — a base rate and bursts at
  ``burst_factor`` times it, ``burst_fraction`` of the time, lasting ``burst_s`` on average.

Each spec gives its arrival times over an interval for a mean rate (``times``) and the
squared coefficient of variation the queueing screens use (``scv``). Plain Python and numpy.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class TokenDist(BaseModel):
    """A distribution of token counts (always at least 1 when sampled).

    Attributes:
        kind: ``fixed`` (``mean``), ``lognormal`` (``mean`` and ``cv``) or ``empirical``
            (``values``, drawn uniformly).
        mean: Mean tokens (fixed, lognormal).
        cv: Coefficient of variation, standard deviation / mean (lognormal).
        values: Observed counts (empirical).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fixed", "lognormal", "empirical"] = "lognormal"
    mean: Annotated[float, Field(gt=0)] | None = None
    cv: Annotated[float, Field(ge=0, le=10)] = 0.0
    values: tuple[Annotated[int, Field(ge=0)], ...] = ()

    @model_validator(mode="after")
    def _complete(self) -> TokenDist:
        if self.kind == "empirical" and not self.values:
            raise ValueError("an empirical distribution needs values")
        if self.kind != "empirical" and self.mean is None:
            raise ValueError(f"a {self.kind} distribution needs a mean")
        return self

    @classmethod
    def fixed(cls, tokens: int) -> TokenDist:
        return cls(kind="fixed", mean=float(tokens))

    @classmethod
    def lognormal(cls, mean: float, cv: float) -> TokenDist:
        return cls(kind="lognormal", mean=mean, cv=cv)

    @classmethod
    def empirical(cls, values: list[int] | tuple[int, ...]) -> TokenDist:
        return cls(kind="empirical", values=tuple(int(v) for v in values))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws as an int array (each at least 1)."""
        if self.kind == "fixed":
            assert self.mean is not None
            out = np.full(n, round(self.mean), dtype=np.int64)
        elif self.kind == "empirical":
            out = rng.choice(np.asarray(self.values, dtype=np.int64), size=n)
        else:
            assert self.mean is not None
            sigma2 = math.log1p(self.cv**2)
            mu = math.log(self.mean) - sigma2 / 2
            out = np.rint(rng.lognormal(mu, math.sqrt(sigma2), size=n)).astype(np.int64)
        return np.maximum(out, 1)

    def expected(self) -> float:
        """The mean (for the screens' load figures)."""
        if self.kind == "empirical":
            return float(np.mean(np.maximum(np.asarray(self.values), 1)))
        assert self.mean is not None
        return self.mean


class RequestShape(BaseModel):
    """The token lengths of a model's requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: TokenDist
    output: TokenDist


class ArrivalSpec(BaseModel):
    """How requests of one stream arrive (see the module docstring).

    Attributes:
        kind: ``poisson``, ``gamma`` or ``mmpp``.
        ca2: Squared coefficient of variation of the gaps (gamma).
        burst_factor: Rate during a burst over the base rate (mmpp, > 1).
        burst_fraction: Share of the time spent in bursts (mmpp, 0 to 1).
        burst_s: Mean length of a burst in seconds (mmpp).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["poisson", "gamma", "mmpp"] = "poisson"
    ca2: Annotated[float, Field(gt=0, le=100)] = 1.0
    burst_factor: Annotated[float, Field(ge=1, le=1000)] = 4.0
    burst_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    burst_s: Annotated[float, Field(gt=0)] = 10.0

    def _mmpp_rates(self, rate: float) -> tuple[float, float, float, float]:
        """(base rate, burst rate, base→burst switch rate, burst→base switch rate)."""
        f, b = self.burst_fraction, self.burst_factor
        base = rate / (1 - f + b * f)
        leave_burst = 1.0 / self.burst_s
        leave_base = leave_burst * f / (1 - f)
        return base, b * base, leave_base, leave_burst

    def scv(self) -> float:
        """The squared coefficient of variation a queueing screen uses for these arrivals:
        1 for Poisson, ``ca2`` for gamma gaps, and for an MMPP its asymptotic index of
        dispersion of counts, ``1 + 2 r1 r2 (l1 - l2)^2 / ((r1 + r2)^2 (l1 r2 + l2 r1))``
        (independent of the mean rate)."""
        if self.kind == "poisson":
            return 1.0
        if self.kind == "gamma":
            return self.ca2
        l1, l2, r1, r2 = self._mmpp_rates(1.0)
        return 1 + 2 * r1 * r2 * (l1 - l2) ** 2 / ((r1 + r2) ** 2 * (l1 * r2 + l2 * r1))

    def times(self, rate: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
        """Arrival times in ``[0, duration_s)`` of a stream whose long-run mean is ``rate``
        requests per second (sorted; empty for a zero rate)."""
        if rate <= 0 or duration_s <= 0:
            return np.empty(0)
        if self.kind == "mmpp":
            return self._mmpp_times(rate, duration_s, rng)
        expected = rate * duration_s
        n = int(expected + 6 * math.sqrt(expected * max(1.0, self.scv())) + 16)
        out: list[np.ndarray] = []
        start = 0.0
        while start < duration_s:
            if self.kind == "poisson":
                gaps = rng.exponential(1 / rate, size=n)
            else:
                shape = 1 / self.ca2
                gaps = rng.gamma(shape, 1 / (rate * shape), size=n)
            ts = start + np.cumsum(gaps)
            out.append(ts[ts < duration_s])
            start = float(ts[-1])
        return np.concatenate(out)

    def _mmpp_times(self, rate: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
        base, burst, leave_base, leave_burst = self._mmpp_rates(rate)
        out: list[np.ndarray] = []
        t = 0.0
        in_burst = rng.random() < self.burst_fraction
        while t < duration_s:
            stay = rng.exponential(1 / (leave_burst if in_burst else leave_base))
            end = min(duration_s, t + stay)
            lam = burst if in_burst else base
            k = rng.poisson(lam * (end - t))
            out.append(np.sort(rng.uniform(t, end, size=k)))
            t, in_burst = end, not in_burst
        return np.concatenate(out) if out else np.empty(0)


POISSON = ArrivalSpec()

__all__ = ["POISSON", "ArrivalSpec", "RequestShape", "TokenDist"]
