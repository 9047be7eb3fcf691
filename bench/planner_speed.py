"""How long ``modelgrid plan`` takes: the example of ``docs/examples/planner`` (8 regions, 2
models, residency rules, bursty arrivals, 24 hours of demand) planned on one core, screens
and simulation included, with the plan's size and what its parts took.

Run from the repository root::

    .venv/bin/python bench/planner_speed.py
    .venv/bin/python bench/planner_speed.py --scale 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from modelgrid.planner import Scenario, plan  # noqa: E402
from modelgrid.planner import profile as profiles  # noqa: E402
from modelgrid.planner.inputs import load_forecast, load_plan_file  # noqa: E402
from modelgrid.planner.scenario import Demand  # noqa: E402
from modelgrid.routing import topology as topo  # noqa: E402

EXAMPLES = REPO / "docs" / "examples" / "planner"


def scenario(scale: float, verify: bool) -> Scenario:
    f = load_forecast(EXAMPLES / "demand.toml")
    settings = load_plan_file(EXAMPLES / "plan.toml")
    models = {d.model for d in f.rows()}
    return Scenario(
        topology=topo.load(EXAMPLES / "topology.toml"),
        demand=tuple(
            Demand(d.workspace, d.region, d.model, d.hour, d.rps * scale) for d in f.rows()
        ),
        shapes=f.shapes,
        profiles={m: profiles.load(EXAMPLES / "profiles" / f"{m}.json") for m in models},
        workspaces={w.name: w for w in settings.workspaces},
        costs=settings.costs.regions,
        default_cost=settings.costs.default_micros,
        slo=settings.slo,
        options=settings.options.model_copy(update={"verify": verify}),
        arrivals=f.stream_overrides(),
        default_arrivals=f.arrivals,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="demand multiplier")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(
        f"# planner_speed: {EXAMPLES.relative_to(REPO)}, demand x{args.scale:g}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (one used)"
    )
    for verify in (False, True):
        for _ in range(args.repeats):
            s = scenario(args.scale, verify)
            t0, c0 = time.perf_counter(), time.process_time()
            p = plan(s)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            sims = sum(len(mp.sims) for mp in p.models.values())
            sized = sum(mp.sized for mp in p.models.values())
            print(
                f"{'screens + simulation' if verify else 'screens only':21} "
                f"{len(s.topology.regions)} regions x {len(s.models())} models: "
                f"{wall:6.2f} s wall, {cpu:6.2f} s CPU; {p.replicas()} replicas, "
                f"{p.cost_micros_per_hour() / 1e6:.2f} {s.currency}/h, met={p.met()}, "
                f"candidate sets sized by simulation: {sized}, design-hour simulations: {sims}"
            )
            for m, mp in p.models.items():
                print(f"    {m}: {dict(sorted(mp.replicas.items()))}")


if __name__ == "__main__":
    main()
