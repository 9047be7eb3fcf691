"""The queueing screens against closed forms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from modelgrid.planner.queueing import (
    erlang_c,
    min_replicas,
    mmc_mean_wait,
    ttft_at_replicas_ms,
    ttft_quantile_ms,
)


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # a textbook value
    assert erlang_c(3, 3.0) == 1.0 and erlang_c(4, 0.0) == 0.0


def test_mm1_mean_wait_is_rho_over_mu_minus_lambda() -> None:
    assert mmc_mean_wait(8.0, 0.1, 1) == pytest.approx(0.8 / (10 - 8))
    assert math.isinf(mmc_mean_wait(10.0, 0.1, 1))


def test_quantile_of_exponential_wait_alone() -> None:
    # no prefill, W: P(W > t) = 0.5 exp(-t / 100 ms): the p95 is 100 ln(10) ms
    got = ttft_quantile_ms(0.95, 0.5, 1 / 100, np.zeros(16))
    assert got == pytest.approx(100 * math.log(10), abs=0.1)


def test_estimate_lies_between_the_pooled_bound_and_chance() -> None:
    rng = np.random.default_rng(0)
    service = rng.exponential(1000, 4000)
    prefill = service * 0.2
    pooled = ttft_at_replicas_ms(6.0, 10, service, prefill, pooled=True)
    p2c = ttft_at_replicas_ms(6.0, 10, service, prefill, choices=2)
    chance = ttft_at_replicas_ms(6.0, 10, service, prefill, choices=1)
    assert pooled < p2c < chance


def test_min_replicas_grows_with_the_rate_and_refuses_an_impossible_budget() -> None:
    service = np.full(64, 500.0)
    prefill = np.full(64, 100.0)
    counts = [min_replicas(r, service, prefill, 400.0) for r in (0.0, 1.0, 4.0, 16.0)]
    assert counts[0] == 0
    assert all(a is not None and b is not None and a <= b for a, b in itertools.pairwise(counts))
    assert min_replicas(1.0, service, prefill, 50.0) is None  # the prefill alone is 100 ms
