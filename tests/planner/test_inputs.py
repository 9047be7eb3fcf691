"""Bad input is refused with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelgrid.planner import Demand, PlanInputError, Slo, plan
from modelgrid.planner.inputs import load_forecast, load_plan_file
from tests.planner.scenarios import MODEL, scenario


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (Demand("acme", "mars-1", MODEL, 3, 1.0), "demand[0].region: unknown region 'mars-1'"),
        (Demand("acme", "eu-west-1", "gpt-9", 3, 1.0), "demand[0].model: no engine profile for model 'gpt-9'"),
        (Demand("acme", "eu-west-1", MODEL, 3, -1.0), "demand[0].rps: a rate must be a finite number >= 0, got -1.0"),
    ],
)  # fmt: skip
def test_bad_demand_is_named(row: Demand, message: str) -> None:
    with pytest.raises(PlanInputError) as exc:
        plan(scenario([row]))
    assert message in exc.value.message


def test_unreachable_targets_are_named() -> None:
    demand = [Demand("acme", "eu-west-1", MODEL, 3, 1.0)]
    with pytest.raises(
        PlanInputError, match=r"slo.tpot_p95_ms: unreachable for m: a replica decodes at 10.0 ms"
    ):
        plan(scenario(demand, slo=Slo(ttft_p95_ms=1500, tpot_p95_ms=5)))
    with pytest.raises(PlanInputError, match=r"slo.ttft_p95_ms: unreachable for m from eu-west-1"):
        plan(scenario(demand, slo=Slo(ttft_p95_ms=50, tpot_p95_ms=50)))


def test_forecast_file(tmp_path: Path) -> None:
    path = tmp_path / "demand.toml"
    path.write_text(
        '[[demand]]\nregion = "eu-west-1"\nmodel = "m"\nrps = 1.5\n'
        '[[demand]]\nworkspace = "w"\nregion = "us-east-1"\nmodel = "m"\nhour = 3\nrps = 2\n'
        '[shapes.m]\nprompt = { kind = "lognormal", mean = 100, cv = 0.5 }\n'
        'output = { kind = "fixed", mean = 20 }\n[arrivals]\nkind = "gamma"\nca2 = 3.0\n'
    )
    f = load_forecast(path)
    rows = f.rows()
    assert len(rows) == 25 and rows[-1] == Demand("w", "us-east-1", "m", 3, 2.0)
    assert f.arrivals.scv() == 3.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[demand]]\nregion = "a"\nmodel = "m"\nrps = 1\nhour = 24\n', "demand[0].hour: Input should be less than or equal to 23 (got 24)"),
        ('[[demand]]\nregion = "a"\nmodel = "m"\nrps = 1\nspeed = 3\n', "demand[0].speed: unknown key"),
        ("[[demand]\n", "Expected"),
    ],
)  # fmt: skip
def test_bad_forecast_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "demand.toml"
    path.write_text(text)
    with pytest.raises(PlanInputError) as exc:
        load_forecast(path)
    assert message in exc.value.message and str(path) in exc.value.message


def test_plan_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text('[slo]\nttft_p95_ms = 900\n[costs]\nregions = { "eu-west-1" = 5 }\n')
    f = load_plan_file(path)
    assert f.slo.ttft_p95_ms == 900 and f.costs.regions == {"eu-west-1": 5}
    path.write_text("[slo]\nttft_p95_ms = -1\n")
    with pytest.raises(PlanInputError, match=r"slo.ttft_p95_ms: Input should be greater than 0"):
        load_plan_file(path)
