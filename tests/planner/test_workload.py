"""Arrival processes and token distributions."""

from __future__ import annotations

import numpy as np
import pytest

from modelgrid.planner.workload import ArrivalSpec, TokenDist


@pytest.mark.parametrize(
    "spec",
    [ArrivalSpec(), ArrivalSpec(kind="gamma", ca2=4.0), ArrivalSpec(kind="mmpp", burst_s=5.0)],
)
def test_arrivals_have_the_mean_rate(spec: ArrivalSpec) -> None:
    times = spec.times(5.0, 20_000.0, np.random.default_rng(1))
    assert len(times) / 20_000.0 == pytest.approx(5.0, rel=0.05)
    assert np.all(np.diff(times) >= 0) and times[-1] < 20_000.0


def test_gamma_gaps_have_the_asked_burstiness() -> None:
    gaps = np.diff(
        ArrivalSpec(kind="gamma", ca2=4.0).times(10.0, 20_000.0, np.random.default_rng(2))
    )
    assert np.var(gaps) / np.mean(gaps) ** 2 == pytest.approx(4.0, rel=0.1)


def test_mmpp_is_burstier_than_poisson() -> None:
    spec = ArrivalSpec(kind="mmpp", burst_factor=5.0, burst_fraction=0.2, burst_s=10.0)
    assert spec.scv() > 2.0
    assert ArrivalSpec().scv() == 1.0


def test_token_distributions() -> None:
    rng = np.random.default_rng(3)
    assert np.mean(TokenDist.lognormal(300, 0.8).sample(rng, 50_000)) == pytest.approx(
        300, rel=0.03
    )
    assert set(TokenDist.empirical([3, 7]).sample(rng, 100)) == {3, 7}
    assert TokenDist.fixed(12).sample(rng, 3).tolist() == [12, 12, 12]
    with pytest.raises(ValueError, match="needs values"):
        TokenDist(kind="empirical")
