"""Re-predict a validation run's levels from what it recorded, with the recalibration's
variants side by side, without running the engine again.

``bench/planner_validation.py --json FILE`` records, per level, every request as the client
saw it (send, first and last token, tokens, replica), the calibrated profile and every
request of the fleet's calibration. From them this rebuilds the windows the validation's
``ledger`` and ``history`` predictions read (the previous level, or the calibration for a
fleet's first; everything since the calibration) — the client's times, within ~4 ms of the
gateway's ledger (validation run 21) — and predicts each level (``planner_validation.predict``,
the recorded arrivals through ``planner.sim``) with the calibrated profile re-read from each
window as ``plan recalibrate`` does (``host_slowdown`` by ``recalibration.contention``, the
serving path's overhead by ``recalibration.path_overhead``) two ways: ``before``, its
spreads re-centred on the window's speed (``calibration.at_speed``, what ``plan
recalibrate`` did before validation run 29), and ``now``, its spreads read from the
window's requests (``calibration.in_traffic``). ``in-run`` the same over the level's own
requests (without the slowdown re-read, as the validation does). Prints each level's TTFT
p50 / p95 errors (%) and how many of its 5 figures meet the goals (≤ 10 % on p50s and
throughput, ≤ 20 % on p95s), then the totals; the recorded ``stored``, ``ledger``,
``history`` and ``in-run`` predictions beside them. ``--floor`` adds, per level, what a
perfect model would meet (``floor``: the simulator at the in-run speed as its own truth,
one draw of the requests' speeds against the mean of the others): how tightly a level of
this many requests measures each figure.

    .venv/bin/python bench/planner_replay.py /tmp/run24/run24.jsonl [--sim-seeds 20] [--floor]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from planner_validation import METRICS, predict, predict_one

from modelgrid.planner import profile as profiles
from modelgrid.planner.calibration import Sample, at_speed, in_traffic, median_speed, speed_ratios
from modelgrid.planner.recalibration import contention, path_overhead

GOALS_PCT = {"ttft_p50_ms": 10, "ttft_p95_ms": 20, "tpot_p50_ms": 10, "tpot_p95_ms": 20,
             "throughput_rps": 10}  # fmt: skip
APART_S = 100_000.0
"""Windows recorded on different clocks are laid this far apart: a request's busy count
only ever involves requests of its own window."""


def shifted(rows: list[Sample], by_s: float) -> list[Sample]:
    return [
        Sample(r.sent_s + by_s, r.first_s + by_s, r.last_s + by_s, r.prompt_tokens,
               r.output_tokens, r.replica)
        for r in rows
    ]  # fmt: skip


def calibration_requests(record: dict[str, Any]) -> list[Sample]:
    """Every request of a fleet's calibration (idle, queued rounds, rounds at once)."""
    out = [Sample(**x) for x in record["idle"]]
    for rnd in record["crowded"]:
        out += [Sample(**x) for x in rnd]
    for rounds in record["together"].values():
        for rnd in rounds:
            out += [Sample(**x) for x in rnd]
    return out


def recentred(
    profile: profiles.EngineProfile, window: list[Sample], *, slowdown: bool, spreads: bool
) -> profiles.EngineProfile:
    """``profile`` re-read from ``window``: its slowdown first when ``slowdown``, then its
    serving path's overhead, then its spreads read from the window when ``spreads``
    (re-centred on its speed otherwise)."""
    if slowdown:
        profile = profile.model_copy(update={"host_slowdown": contention(profile, window).slowdown})
    profile = path_overhead(profile, window).profile
    ratios = [speed_ratios(profile, window)]
    return in_traffic(profile, ratios) if spreads else at_speed(profile, median_speed(ratios))


def floor(
    rows: list[Sample], replicas: int, profile: profiles.EngineProfile, warmup: int, seeds: int
) -> dict[str, float]:
    """What a perfect model would meet: the simulator itself as the truth. Each of ``seeds``
    simulations of the level (its recorded arrivals and tokens, ``profile``'s spreads: one
    draw of every request's speed, as a real run is one) is taken as the measured one and
    predicted by the mean of the others, as the validation predicts; per figure, the share
    of draws within its goal. Below 1, a level of this many requests measures that figure
    more loosely than its goal, whatever the model."""
    runs = [predict_one(rows, replicas, profile, warmup, seed) for seed in range(seeds)]
    hits: dict[str, list[bool]] = {k: [] for k in METRICS}
    for i, truth in enumerate(runs):
        others = [r for j, r in enumerate(runs) if j != i]
        for k in METRICS:
            guess = float(np.mean([r[k] for r in others]))
            hits[k].append(abs(100 * (guess - truth[k]) / truth[k]) <= GOALS_PCT[k])
    return {k: float(np.mean(v)) for k, v in hits.items()}


def met(predicted: dict[str, float], measured: dict[str, float]) -> tuple[int, list[float]]:
    errs = [100 * (predicted[k] - measured[k]) / measured[k] for k in METRICS]
    return sum(abs(e) <= GOALS_PCT[k] for e, k in zip(errs, METRICS, strict=True)), errs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", help="a --json file of bench/planner_validation.py")
    parser.add_argument("--sim-seeds", type=int, default=20)
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also what a perfect model would meet, level by level (floor)",
    )
    args = parser.parse_args()
    fleets: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in Path(args.json).read_text().splitlines():
        r = json.loads(line)
        fleets[r["replicas"]].append(r)
    totals: dict[str, int] = defaultdict(int)
    chances: dict[str, list[float]] = defaultdict(list)  # --floor: per figure, per level
    figures = 0
    print("replicas load | " + " | ".join(
        f"{k}: TTFT p50 / p95 % (met of 5)"
        for k in ("ledger before", "ledger now", "history before", "history now",
                  "in-run before", "in-run now", "recorded stored", "recorded ledger",
                  "recorded history", "recorded in-run")
    ))  # fmt: skip
    for n, levels in fleets.items():
        profile = profiles.EngineProfile.model_validate(levels[0]["profile"])
        windows = [calibration_requests(levels[0]["calibration"])]
        for i, r in enumerate(levels):
            rows = [Sample(**x) for x in r["rows"]]
            counted = sorted(rows, key=lambda x: x.sent_s)[r["warmup"] :]
            history = [s for w in windows for s in w]
            preds = {
                "ledger_before": recentred(profile, windows[-1], slowdown=True, spreads=False),
                "ledger_now": recentred(profile, windows[-1], slowdown=True, spreads=True),
                "history_before": recentred(profile, history, slowdown=True, spreads=False),
                "history_now": recentred(profile, history, slowdown=True, spreads=True),
                "in_run_before": recentred(profile, counted, slowdown=False, spreads=False),
                "in_run_now": recentred(profile, counted, slowdown=False, spreads=True),
            }
            got = {k: predict(rows, n, p, r["warmup"], args.sim_seeds) for k, p in preds.items()}
            for k in ("stored", "ledger", "history", "in_run"):
                if f"predicted_{k}" in r:
                    got[f"recorded_{k}"] = r[f"predicted_{k}"]
            cells = []
            for k, predicted in got.items():
                ok, errs = met(predicted, r["measured"])
                totals[k] += ok
                cells.append(f"{errs[0]:+.1f} / {errs[1]:+.1f} ({ok})")
            figures += len(METRICS)
            if args.floor:  # at the in-run speed and spreads (with the overhead re-read)
                shares = floor(rows, n, preds["in_run_now"], r["warmup"], 2 * args.sim_seeds)
                for k, v in shares.items():
                    chances[k].append(v)
                cells.append("floor " + " ".join(f"{v:.2f}" for v in shares.values()))
            print(f"{n:8d} {r['load']:4.2f} | " + " | ".join(cells), flush=True)
            windows.append(shifted(rows, APART_S * (i + 1)))
    print("within the goals: " + ", ".join(f"{k} {v}/{figures}" for k, v in totals.items()))
    if chances:
        expected = sum(sum(v) for v in chances.values())
        print(f"a perfect model would meet {expected:.1f}/{figures} (per figure: "
              + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in chances.items()) + ")")  # fmt: skip


if __name__ == "__main__":
    main()
