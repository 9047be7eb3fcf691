"""The planner's simulator against reality: predicted vs measured TTFT, time per output token
and throughput of a real workload through ``modelgrid serve`` and real llama.cpp replicas.

1. Profile: ``modelgrid plan profile`` measures the engine in-process (one llama.cpp thread,
   raw prompts, no prefix reuse) over ``--profile-prompts`` prompt lengths, right before each
   fleet size is run (the engine's speed drifts on a shared machine); the simulator uses that
   profile and nothing else about the engine.
2. Fleet: ``--replicas`` ``modelgrid engine`` workers (``MODELGRID_ENGINE__N_THREADS=1``, at
   most one per core) as the upstream replicas of one region in a topology file, and a
   ``modelgrid serve`` gateway in front (default ``cache_aware`` policy, probes every 0.5 s).
3. Calibration of the fleet (``modelgrid plan calibrate``, the product's command, in a child
   process, through the gateway): ``--calibrate`` requests one after another on the idle
   fleet give the serving path's overhead and the TTFT and decode spreads (the overhead
   apart from the engine's prefill now, read from ``--rounds`` rounds of ``replicas + 1``
   at once, where one request waits behind another); with several
   workers, rounds of ``k`` requests at once that the gateway placed on ``k`` distinct
   workers (``--rounds`` per ``k``, at least 5, default 10; all spread among the idle requests)
   measure how much slower a replica serves while ``k``
   share the machine's cores (``host_slowdown``). All written into the profile file.
4. Workload per load level: Poisson arrivals at ``load x replicas / E[service]`` (the
   calibrated profile's service time of the workload's shape, times the slowdown with all
   replicas busy, so a level's load is of what this machine can serve), ``--requests`` chat
   completions (``planner.probe.ChatProbe``), each streamed with ``include_usage``: a user
   message of ``--prompt-words`` random words asking to go on counting, greedy,
   ``--max-tokens``. Client side: send time, first and last content chunk, the usage (prompt
   tokens less cached ones, completion tokens), the replica that answered.
5. Prediction: the recorded arrivals and each request's measured token counts (what the
   usage ledger holds) replayed through ``planner.sim`` over the same topology (trace-driven:
   the same sample path, so the comparison is of the model, not of two random draws; each
   figure the mean over ``--sim-seeds`` simulations, whose seeds draw the requests' spread
   factors and the router's choices), five ways: ``stored``, the calibrated profile file as ``modelgrid plan`` reads it (the
   product's claim); ``ledger``, that profile re-centred by ``modelgrid plan recalibrate``
   (the product's command, in a child process) on the gateway's usage ledger over the
   window before the level (from the start of the previous level, or of the calibration
   for the first: out of sample, the fleet's speed minutes before, as an operator would
   recalibrate on the last busy hour; where replicas share a machine it re-reads
   ``host_slowdown`` and, where 10 or more requests waited behind another, the serving
   path's overhead); ``history``, the same over all the fleet's traffic since its
   calibration began (a longer window: the speed's mean over more minutes, and more time
   at each number of busy replicas); ``in-run``, the same with its spreads read from the
   engine's speed during the level, from the level's own requests (the serving path's overhead
   re-read as ``plan recalibrate`` does, ``recalibration.path_overhead``; then
   ``calibration.in_traffic`` as ``plan recalibrate`` reads spreads: decode from each
   request's time per output token, prefill from the requests that found their replica
   idle, each with the calibrated host slowdown taken off while other workers were busy on
   the machine), which
   separates the model's error from the engine's drift since the profile; ``plain``, the
   profile alone (no overhead, spread or slowdown: the model before calibration).
6. CPU per level, from ``/proc``: the gateway's, the workers' and this client's CPU seconds
   per request, and the whole machine's busy cores less ours (``foreign``: other jobs).

Figures per (replicas, load): TTFT p50/p95, time per output token p50/p95 (per request:
(last - first) / (tokens - 1)), throughput (requests completed / span), predicted and
measured, and the error in %. The first ``--warmup`` requests of a level are not counted.
``--json FILE`` appends one line per level (figures, in-run speed, profile, CPU, every
request, and every request of the fleet's calibration); ``--report FILE`` prints its markdown table, with each measured TTFT p50's 95 %
interval (a moving-block bootstrap over the level's requests: how far 56 requests pin a
figure whose waits come in bursts) and † on a missed goal whose prediction lies inside it.

Run from the repository root (embedded model prepared; a quiet machine: check ``uptime``)::

    .venv/bin/python bench/planner_validation.py
    .venv/bin/python bench/planner_validation.py --replicas 1 --loads 0.5 --requests 30
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from responses_chain import Gateway, start_gateway  # noqa: E402

from modelgrid.core.types import RoutingHints  # noqa: E402
from modelgrid.planner import profile as profiles  # noqa: E402
from modelgrid.planner.calibration import (  # noqa: E402
    Sample,
    counting_prompt,
    in_traffic,
    median_speed,
    speed_ratios,
)
from modelgrid.planner.probe import ChatProbe  # noqa: E402
from modelgrid.planner.recalibration import path_overhead  # noqa: E402
from modelgrid.planner.sim import Served, SimConfig, Stream, simulate  # noqa: E402
from modelgrid.routing.topology import Deployment, Region, Replica, Topology  # noqa: E402
from routing import Worker, start_workers, stop_workers  # noqa: E402

MODEL = "qwen2.5-coder-0.5b-instruct"


async def run_level(
    base_url: str, key: str, rate: float, args: argparse.Namespace, seed: int
) -> list[Sample]:
    """Poisson arrivals at ``rate``: ``--requests`` counting prompts through the gateway."""
    rng = random.Random(seed)
    gaps = np.random.default_rng(seed).exponential(1 / rate, args.requests)
    at = np.cumsum(gaps) - gaps[0]
    texts = [counting_prompt(i, args.prompt_words, rng) for i in range(args.requests)]
    t0 = time.perf_counter()
    async with ChatProbe(base_url, key, MODEL, max_tokens=args.max_tokens, t0=t0) as probe:

        async def fire(i: int) -> Sample:
            delay = at[i] - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            return await probe(texts[i])

        return list(await asyncio.gather(*(fire(i) for i in range(args.requests))))


async def uncached_prompt(gw: Gateway, args: argparse.Namespace) -> float:
    """Uncached prompt tokens of one of the workload's messages (they are all alike)."""
    async with ChatProbe(gw.base_url, gw.key, MODEL, max_tokens=args.max_tokens) as probe:
        text = counting_prompt(0, args.prompt_words, random.Random(args.seed))
        return float((await probe(text)).prompt_tokens)


def calibrate(
    gw_url: str, gw_key: str, gw_pid: int, replicas: int, path: Path, args: argparse.Namespace
) -> tuple[profiles.EngineProfile, float]:
    """``modelgrid plan calibrate`` through the gateway (the product's command, in a child
    process), on the profile at ``path`` (rewritten in place; its requests recorded beside
    it, ``.calibration.json``); returns the calibrated profile and the gateway's CPU ms per
    calibration request (its idle CPU during ``--calibrate-spacing-s`` included)."""
    cmd = [
        sys.executable, "-m", "modelgrid", "plan", "calibrate", "--key", gw_key, "--url", gw_url,
        "--model", MODEL, "--profile", str(path), "--requests", str(args.calibrate),
        "--replicas-per-host", str(replicas), "--rounds", str(args.rounds),
        "--prompt-words", str(args.prompt_words), "--max-tokens", str(args.max_tokens),
        "--seed", str(args.seed * 7 + replicas), "--spacing-s", str(args.calibrate_spacing_s),
        "--record", str(path.with_suffix(".calibration.json")),
    ]  # fmt: skip
    cpu0 = proc_cpu_s(gw_pid)
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "COLUMNS": "200"})
    sent = 1 + args.calibrate + args.rounds * (replicas + 1 + sum(range(2, replicas + 1)))
    return profiles.load(path), (proc_cpu_s(gw_pid) - cpu0) * 1000 / sent


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def now_iso_ms() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def recalibrated(
    gw: Gateway, path: Path, since: str, until: str, tag: str
) -> tuple[profiles.EngineProfile, str]:
    """``modelgrid plan recalibrate`` (the product's command, in a child process) on the
    gateway's usage ledger from ``since`` to ``until``: the calibrated profile at ``path``
    re-centred on the fleet's speed over the requests that arrived then (written beside it,
    ``.ledger-<tag>.json``); returns it and the command's report line (the stored profile
    and the command's refusal where the window holds too few requests)."""
    folder = gw.folder
    out = path.with_suffix(f".ledger-{tag}.json")
    cmd = [
        sys.executable, "-m", "modelgrid", "plan", "recalibrate", "--model", MODEL,
        "--since", since, "--until", until, "--profile", str(path), "--out", str(out),
        "--topology", str(folder / "topology.toml"),
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "400", "MODELGRID_DATA_DIR": str(folder),
           "MODELGRID_DATABASE__URL": f"sqlite+aiosqlite:///{folder / 'mg.db'}"}  # fmt: skip
    done = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode == 2:  # too few requests in the window: the stored profile, said so
        return profiles.load(path), "not recalibrated: " + " ".join(done.stderr.split())
    done.check_returncode()
    return profiles.load(out), done.stdout.splitlines()[0]


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (``/proc/<pid>/stat``), children waited
    for included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (``/proc/stat``: all but idle, iowait)."""
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(cpu) - cpu[3] - cpu[4]) / os.sysconf("SC_CLK_TCK")


def predict(
    rows: list[Sample], replicas: int, profile: profiles.EngineProfile, warmup: int, seeds: int
) -> dict[str, float]:
    """The recorded arrivals and token counts through ``planner.sim`` (the machine's
    sharing from ``profile.host_slowdown``), each figure the mean over ``seeds`` simulations
    (the seed draws each request's prefill and decode factors from the spreads and the
    router's random choices: one draw of 40 requests moves a p95 by itself)."""
    runs = [predict_one(rows, replicas, profile, warmup, seed) for seed in range(seeds)]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


def predict_one(
    rows: list[Sample], replicas: int, profile: profiles.EngineProfile, warmup: int, seed: int
) -> dict[str, float]:
    all_served, utilisation = simulated(rows, replicas, profile, seed)
    served = all_served[warmup:]
    ttft = [s.ttft_ms for s in served]
    tpot = [s.tpot_ms for s in served if s.output_tokens > 1]
    span = max(s.done_s for s in served) - served[0].arrival_s
    out = figures(ttft, tpot, len(served) / span)
    out["utilisation"] = utilisation
    return out


def simulated(
    rows: list[Sample], replicas: int, profile: profiles.EngineProfile, seed: int
) -> tuple[list[Served], float]:
    """Each request of ``rows`` as the simulator served it, in order of arrival, and the
    replicas' mean utilisation."""
    topo = topology(["http://127.0.0.1:1/v1"] * replicas)
    stream = Stream(
        origin="bench",
        model=MODEL,
        workspace="bench",
        hints=RoutingHints(),
        arrivals_s=np.array([r.sent_s for r in rows]),
        prompt_tokens=np.array([max(1, r.prompt_tokens) for r in rows]),
        output_tokens=np.array([r.output_tokens for r in rows]),
    )
    res = simulate(topo, [stream], {MODEL: profile}, SimConfig(gateway_overhead_ms=1.0, seed=seed))
    served = sorted(res.served, key=lambda s: s.arrival_s)
    return served, float(np.mean(list(res.utilisation().values())))


def measured(rows: list[Sample], warmup: int) -> dict[str, float]:
    counted = sorted(rows, key=lambda r: r.sent_s)[warmup:]
    ttft = [r.ttft_ms for r in counted]
    tpot = [r.tpot_ms for r in counted if r.output_tokens > 1]
    span = max(r.last_s for r in counted) - counted[0].sent_s
    return figures(ttft, tpot, len(counted) / span)


def figures(ttft: list[float], tpot: list[float], rps: float) -> dict[str, float]:
    return {
        "ttft_p50_ms": float(np.quantile(ttft, 0.5)),
        "ttft_p95_ms": float(np.quantile(ttft, 0.95)),
        "tpot_p50_ms": float(np.quantile(tpot, 0.5)),
        "tpot_p95_ms": float(np.quantile(tpot, 0.95)),
        "throughput_rps": rps,
    }


def topology(urls: list[str]) -> Topology:
    return Topology(
        (Region("bench", "", ""),),
        (
            Deployment(
                MODEL, "bench", tuple(Replica(f"w{i}", "upstream", u) for i, u in enumerate(urls))
            ),
        ),
        gateway_region="bench",
    )


def measure_profile(tmp: Path, args: argparse.Namespace, tag: str) -> Path:
    """``modelgrid plan profile`` (in a child process, one thread) into a fresh file; or a
    copy of ``--profile``."""
    path = tmp / f"profile-{tag}.json"
    if args.profile:
        path.write_text(Path(args.profile).read_text())
        return path
    env = {**os.environ, "MODELGRID_ENGINE__N_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "modelgrid", "plan", "profile", "--prompt-tokens",
        args.profile_prompts, "--batch-sizes", "1", "--output-tokens", str(args.max_tokens),
        "--repeats", str(args.profile_repeats), "--out", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO, env=env)
    return path


def handover_ms(rows: list[Sample], profile: profiles.EngineProfile) -> list[float]:
    """For each request that waited behind another on its replica (sent before that one's
    last token): its first token less the other's last token, less its own prefill (the
    profile's fit times the spread's median). The simulator takes this to be 0: the replica
    starts the next request as its last token goes out."""
    mid = float(np.median(profile.prefill_spread)) if profile.prefill_spread else 1.0
    out = []
    for rep in {r.replica for r in rows}:
        mine = sorted((r for r in rows if r.replica == rep), key=lambda r: r.first_s)
        for a, b in itertools.pairwise(mine):
            if b.sent_s < a.last_s:
                prefill = float(profile.prefill_ms(max(1, b.prompt_tokens))) * mid
                out.append((b.first_s - a.last_s) * 1000 - prefill)
    return out


METRICS = ("ttft_p50_ms", "ttft_p95_ms", "tpot_p50_ms", "tpot_p95_ms", "throughput_rps")


def level(
    n: int, load: float, index: int, gw: Gateway, workers: list[Worker],
    cp: profiles.EngineProfile, args: argparse.Namespace,
) -> None:  # fmt: skip
    """One load level: run it, predict it three ways, print and record."""
    mean_ms = float(cp.service_ms(args.mean_prompt, args.max_tokens))
    mean_ms *= cp.host_slowdown[-1] if cp.host_slowdown else 1.0
    rate = load * n / (mean_ms / 1000)
    pids = {"gateway": [gw.proc.pid], "workers": [w.proc.pid for w in workers],
            "client": [os.getpid()]}  # fmt: skip
    cpu0 = {k: sum(proc_cpu_s(p) for p in v) for k, v in pids.items()}
    busy0, wall0, load0 = machine_busy_s(), time.monotonic(), os.getloadavg()[0]
    since, args.phase_start = args.phase_start, now_iso_ms()
    rows = asyncio.run(run_level(gw.base_url, gw.key, rate, args, args.seed * 100 + index))
    wall = time.monotonic() - wall0
    cpu = {k: sum(proc_cpu_s(p) for p in v) - cpu0[k] for k, v in pids.items()}
    foreign = (machine_busy_s() - busy0 - sum(cpu.values())) / wall
    # the engine's speed in this run, from its own requests (the counted ones; the
    # calibrated host slowdown taken off where they shared the cores)
    counted = sorted(rows, key=lambda r: r.sent_s)[args.warmup :]
    # and the serving path's overhead re-read from its requests that waited (plan recalibrate's)
    run_cp = path_overhead(cp, counted).profile
    ratios = [speed_ratios(run_cp, counted)]
    speed = median_speed(ratios)  # == calibration.speed_in_run(run_cp, counted)
    in_run_cp = in_traffic(run_cp, ratios)  # its spreads: the level's own
    plain = cp.model_copy(
        update={"overhead_ms": 0.0, "prefill_spread": (), "decode_spread": (), "host_slowdown": ()}
    )
    ledger_cp, ledger_line = recalibrated(gw, args.profile_path, since, args.phase_start,
                                          f"{n}-{index}")  # fmt: skip
    history_cp, history_line = (ledger_cp, ledger_line) if since == args.fleet_start else (
        recalibrated(gw, args.profile_path, args.fleet_start, args.phase_start, f"{n}-{index}-all")
    )  # fmt: skip
    preds = {
        "stored": predict(rows, n, cp, args.warmup, args.sim_seeds),
        "ledger": predict(rows, n, ledger_cp, args.warmup, args.sim_seeds),
        "history": predict(rows, n, history_cp, args.warmup, args.sim_seeds),
        "in_run": predict(rows, n, in_run_cp, args.warmup, args.sim_seeds),
        "plain": predict(rows, n, plain, args.warmup, args.sim_seeds),
    }
    m = measured(rows, args.warmup)
    gaps = handover_ms(counted, in_run_cp)
    speeds = (f"prefill {speed.prefill:.3f} ({speed.prefill_requests} requests)"
              if speed.prefill is not None else "prefill n/a") + (
              f", decode {speed.decode:.3f} ({speed.decode_requests} requests)"
              if speed.decode is not None else ", decode n/a")  # fmt: skip
    print(f"# {n} replica(s), target load {load:.2f}: simulated utilisation "
          f"{preds['stored']['utilisation']:.2f}, {rate:.3f} requests/s offered, "
          f"{np.mean([r.prompt_tokens for r in rows]):.0f} uncached prompt tokens on average; "
          f"in-run speed over the profile: {speeds}; hand-over (next first token - last "
          f"token - its prefill) median {np.median(gaps) if gaps else float('nan'):.0f} ms "
          f"over {len(gaps)} waiting requests; CPU s/request: gateway "
          f"{cpu['gateway'] / len(rows):.3f}, workers {cpu['workers'] / len(rows):.3f}, client "
          f"{cpu['client'] / len(rows):.3f}; foreign {foreign:.2f} cores; 1-min load "
          f"{load0:.2f} -> {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"# ledger (modelgrid plan recalibrate, {since} to {args.phase_start}): {ledger_line}")
    print(f"# history ({args.fleet_start} to {args.phase_start}): {history_line}")
    print("replicas load requests | metric          measured |  stored    err |  ledger    err"
          " | history    err |  in-run    err |   plain    err")  # fmt: skip
    for k in METRICS:
        cells = " | ".join(
            f"{preds[w][k]:7.3f} {100 * (preds[w][k] - m[k]) / m[k]:+5.1f}%" for w in preds
        )
        print(f"{n:8d} {load:4.2f} {len(counted):8d} | {k:14} {m[k]:9.3f} | {cells}")
    sys.stdout.flush()
    if args.json:
        record = {
            "replicas": n, "load": load, "rate_rps": rate, "at": now_iso(), "warmup": args.warmup,
            "measured": m, **{f"predicted_{w}": v for w, v in preds.items()},
            "speed": dataclasses.asdict(speed), "handover_ms": gaps,
            "in_run_overhead_ms": run_cp.overhead_ms,
            "ledger_window": [since, args.phase_start],
            "ledger_spreads": [ledger_cp.prefill_spread, ledger_cp.decode_spread],
            "ledger_slowdown": ledger_cp.host_slowdown,
            "history_window": [args.fleet_start, args.phase_start],
            "history_spreads": [history_cp.prefill_spread, history_cp.decode_spread],
            "history_slowdown": history_cp.host_slowdown,
            "cpu_s": cpu, "foreign_cores": foreign, "wall_s": wall,
            "load_avg": [load0, os.getloadavg()[0]],
            "profile": cp.model_dump(mode="json", exclude={"points"}),
            "calibration": args.calibration_record,
            "rows": [dataclasses.asdict(r) for r in rows],
            # seed 0 at the in-run speed, request by request (the rows' order: arrival)
            "simulated": [
                {"replica": x.replica, "wait_ms": x.wait_ms, "ttft_ms": x.ttft_ms,
                 "tpot_ms": x.tpot_ms}
                for x in simulated(rows, n, in_run_cp, 0)[0]
            ],
        }  # fmt: skip
        with open(args.json, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


PREDICTIONS = ("stored", "ledger", "history", "in_run", "plain")
BLOCK = 8
"""Requests a block of ``interval95``'s bootstrap: neighbours in a queue wait alike."""


def interval95(rows: list[dict[str, float]], warmup: int, seed: int = 0) -> dict[str, tuple]:
    """The measured latency figures' 95 % intervals: a moving-block bootstrap (Künsch, *Ann.
    Statist.* 17(3), 1989) over the counted requests in arrival order, blocks of ``BLOCK``
    consecutive requests (a burst's waits are not independent draws), 2000 resamples,
    percentile interval. How far a level's own sample can pin each figure."""
    counted = sorted(rows, key=lambda r: r["sent_s"])[warmup:]
    ttft = np.array([(r["first_s"] - r["sent_s"]) * 1000 for r in counted])
    tpot = np.array([Sample(**r).tpot_ms for r in counted])
    n, rng = len(counted), np.random.default_rng(seed)
    if n < BLOCK:
        return {}
    starts = rng.integers(0, n - BLOCK + 1, size=(2000, -(-n // BLOCK)))
    idx = (starts[:, :, None] + np.arange(BLOCK)).reshape(2000, -1)[:, :n]
    out = {}
    for k, x, q in (("ttft_p50_ms", ttft, 0.5), ("ttft_p95_ms", ttft, 0.95),
                    ("tpot_p50_ms", tpot, 0.5), ("tpot_p95_ms", tpot, 0.95)):  # fmt: skip
        draws = np.quantile(x[idx], q, axis=1)
        out[k] = (float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975)))
    return out


def _err(predicted: float, measured: float, goal_pct: float, within: tuple | None) -> str:
    """The error in %, bold over the goal; a missed one marked † when ``predicted`` lies
    inside the measured figure's 95 % interval ``within``."""
    e = 100 * (predicted - measured) / measured
    if abs(e) <= goal_pct:
        return f"{e:+.1f}"
    inside = within is not None and within[0] <= predicted <= within[1]
    return f"**{e:+.1f}**" + ("†" if inside else "")


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def report(path: str, warmup: int) -> None:
    """The markdown table of a ``--json`` file: per level, measured (with the 95 % interval
    of the TTFT p50, ``interval95``) and the error of each prediction (stored / ledger /
    history / in-run / plain; ``n/a`` where a record has none), goals marked (bold: missed; †: inside the measured figure's 95 % interval)."""
    goals = {"ttft_p50_ms": 10, "ttft_p95_ms": 20, "tpot_p50_ms": 10, "tpot_p95_ms": 20,
             "throughput_rps": 10}  # fmt: skip
    print("| replicas | load (target / sim.) | 1-min load | in-run prefill / decode | "
          + " | ".join(f"{k} meas. | stored / ledger / history / in-run / plain" for k in METRICS) + " |")  # fmt: skip
    print("|---" * (4 + 2 * len(METRICS)) + "|")
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        m, sp = r["measured"], r["speed"]
        ci = interval95(r["rows"], r.get("warmup", warmup))
        cells = [f"{m[k]:.0f}" if k.endswith("_ms") else f"{m[k]:.3f}" for k in METRICS]
        if "ttft_p50_ms" in ci:
            cells[0] += f" ({ci['ttft_p50_ms'][0]:.0f}-{ci['ttft_p50_ms'][1]:.0f})"
        errs = [
            " / ".join(_err(r[f"predicted_{w}"][k], m[k], goals[k], ci.get(k))
                       if f"predicted_{w}" in r else "n/a" for w in PREDICTIONS)
            for k in METRICS
        ]  # fmt: skip
        print(f"| {r['replicas']} | {r['load']:.2f} / {r['predicted_stored']['utilisation']:.2f} "
              f"| {r['load_avg'][0]:.2f}-{r['load_avg'][1]:.2f} | {_f(sp['prefill'])} / "
              f"{_f(sp['decode'])} | "
              + " | ".join(f"{c} | {e} %" for c, e in zip(cells, errs, strict=True)) + " |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", default="1,2", help="fleet sizes (one worker per core)")
    parser.add_argument("--loads", default="0.3,0.6,0.85", help="target utilisation levels")
    parser.add_argument("--requests", type=int, default=60, help="per level")
    parser.add_argument("--warmup", type=int, default=5, help="first requests not counted")
    parser.add_argument("--prompt-words", type=int, default=80)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--profile-prompts", default="32,96,192,384")
    parser.add_argument("--profile-repeats", type=int, default=2)
    parser.add_argument("--profile", help="an existing profile JSON (skips the profiling)")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calibrate", type=int, default=10, help="idle requests, gateway")
    parser.add_argument("--rounds", type=int, default=10, help="calibration rounds per k")
    parser.add_argument("--calibrate-spacing-s", type=float, default=0.0,
                        help="idle s before each calibration request or round")  # fmt: skip
    parser.add_argument("--sim-seeds", type=int, default=20, help="simulations per prediction")
    parser.add_argument("--json", help="append one JSON line per level to this file")
    parser.add_argument("--report", help="print the markdown table of a --json file, only")
    args = parser.parse_args()
    if args.report:
        report(args.report, args.warmup)
        return
    sizes = [int(x) for x in args.replicas.split(",")]
    loads = [float(x) for x in args.loads.split(",")]
    with tempfile.TemporaryDirectory(prefix="mg-bench-planner-") as name:
        tmp = Path(name)
        print(f"# planner_validation: {MODEL}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores")  # fmt: skip
        for n in sizes:
            # profiled right before each fleet: the engine's speed drifts on a shared machine
            path = measure_profile(tmp, args, str(n))
            profile = profiles.load(path)
            a, b, c = profile.prefill
            print(
                f"# profile: prefill {a:.1f} + {b:.3f} n + {c:.2e} n^2 ms, "
                f"decode {profile.decode[0]:.2f} + {profile.decode[1]:.4f} m ms/token"
            )
            workers = start_workers(n, 1, args.n_ctx, tmp)
            gw = None
            try:
                folder = tmp / f"fleet-{n}"
                folder.mkdir()
                gw = start_gateway("affinity", [w.port for w in workers], folder)  # cache_aware
                args.phase_start = now_iso_ms()  # the ledger's first window: the calibration
                args.fleet_start = args.phase_start  # history: all since it
                args.profile_path = path
                cp, gw_cpu_ms = calibrate(gw.base_url, gw.key, gw.proc.pid, n, path, args)
                args.calibration_record = json.loads(
                    path.with_suffix(".calibration.json").read_text()
                )
                print(f"# calibration (modelgrid plan calibrate): overhead {cp.overhead_ms:.0f} "
                      f"ms, host slowdown {cp.host_slowdown}; gateway CPU ~{gw_cpu_ms:.0f} "
                      f"ms/request")  # fmt: skip
                args.mean_prompt = asyncio.run(uncached_prompt(gw, args))
                for index, load in enumerate(loads):
                    level(n, load, index, gw, workers, cp, args)
            finally:
                if gw is not None:
                    gw.proc.terminate()
                    gw.proc.wait(30)
                stop_workers(workers)


if __name__ == "__main__":
    main()
