"""How long ``modelgrid plan recalibrate``'s reading of the ledger takes as the window grows.

A window of a fleet's ledger holds thousands of requests an hour. The recalibration reads,
for every request, how many replicas of its machine were busy at each ms of its prefill and
decode (``planner.calibration.work_ms``; ``recalibration.contention``) and whether it waited
behind another on its replica. This times ``recalibration.recalibrate`` over synthetic
ledgers of growing size: Poisson arrivals at ~0.6 utilisation to two machines of three
replicas each, served by the product's simulator (``planner.sim``) with a known host
slowdown, turned into the ledger's rows (``tenancy.timings.Served``). Run it on two trees
to compare (``PYTHONPATH=<other tree>/src``); it prints, per size, the seconds and the
speed and slowdown read.

    .venv/bin/python bench/recalibrate_speed.py [--sizes 500,2000,8000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from modelgrid.core.types import RoutingHints
from modelgrid.planner import profile as profiles
from modelgrid.planner import recalibration
from modelgrid.planner.sim import SimConfig, Stream, simulate
from modelgrid.routing.topology import Deployment, Region, Replica, Topology
from modelgrid.tenancy.timings import Served

MODEL = "m"
T0 = datetime(2026, 12, 7, tzinfo=UTC)
TRUTH = (1.0, 1.2, 1.5)


def ledger(requests: int, seed: int = 1) -> tuple[list[Served], Topology, profiles.EngineProfile]:
    """``requests`` served requests of two 3-replica machines, as the ledger holds them, the
    topology and the profile they are read against (its table off: 1 / 1.05 / 1.1)."""
    base = profiles.synthetic(MODEL, prefill_base_ms=100, prefill_per_token_ms=2, decode_ms=25)
    names = [f"r{i}" for i in range(6)]
    topo = Topology(
        (Region("r1", "", ""),),
        (Deployment(MODEL, "r1", tuple(Replica(r, "upstream", f"http://h/{r}") for r in names)),),
        gateway_region="r1",
    )  # fmt: skip
    truth = base.model_copy(update={"replicas_per_host": 3, "host_slowdown": TRUTH})
    rng = np.random.default_rng(seed)
    prompts = rng.integers(20, 120, requests)
    stream = Stream(
        "r1", MODEL, "w", RoutingHints(), np.cumsum(rng.exponential(1 / 2.5, requests)),
        prompts, rng.integers(8, 40, requests),
    )  # fmt: skip
    config = SimConfig(gateway_overhead_ms=0.0, probe_interval_s=None, policy="p2c")
    res = simulate(topo, [stream], {MODEL: truth}, config)
    out = []
    for x, prompt in zip(sorted(res.served, key=lambda x: x.arrival_s), prompts, strict=True):
        last = x.ttft_ms + x.tpot_ms * (x.output_tokens - 1)
        out.append(Served(T0 + timedelta(seconds=x.arrival_s), round(x.ttft_ms), round(last),
                          round(last) + 30, int(prompt), x.output_tokens, "r1", x.replica))  # fmt: skip
    calibrated = base.model_copy(update={"replicas_per_host": 3, "host_slowdown": (1.0, 1.05, 1.1)})  # fmt: skip
    return out, topo, calibrated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="500,2000,8000", help="requests in the window")
    args = parser.parse_args()
    print(f"# recalibrate over a synthetic ledger (2 machines x 3 replicas, true slowdown {TRUTH})")
    print("requests | seconds | decode speed | host slowdown read")
    for n in (int(x) for x in args.sizes.split(",")):
        served, topo, profile = ledger(n)
        t0 = time.perf_counter()
        done = recalibration.recalibrate(profile, served, topo)
        wall = time.perf_counter() - t0
        if isinstance(done, tuple):  # trees before the slowdown was re-read: (profile, speed)
            read, speed = done[0].host_slowdown, done[1]
        else:
            read, speed = done.profile.host_slowdown, done.speed
        print(f"{n:8d} | {wall:7.2f} | {speed.decode:.3f} | {read}", flush=True)


if __name__ == "__main__":
    main()
