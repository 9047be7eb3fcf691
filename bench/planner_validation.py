"""The planner's simulator against reality: predicted vs measured TTFT, time per output token
and throughput of a real workload through ``modelgrid serve`` and real llama.cpp replicas.

1. Profile: ``modelgrid plan profile`` measures the engine in-process (one llama.cpp thread,
   raw prompts, no prefix reuse) over ``--profile-prompts`` prompt lengths, right before each
   fleet size is run (the engine's speed drifts on a shared machine); the simulator uses that
   profile and nothing else about the engine.
2. Fleet: ``--replicas`` ``modelgrid engine`` workers (``MODELGRID_ENGINE__N_THREADS=1``, at
   most one per core) as the upstream replicas of one region in a topology file, and a
   ``modelgrid serve`` gateway in front (default ``cache_aware`` policy, probes every 0.5 s).
3. Workload per load level: Poisson arrivals at ``load x replicas / E[service]`` (the
   profile's service time of the workload's mean shape), ``--requests`` chat completions,
   each streamed with ``include_usage``: a user message of ``--prompt-words`` random words
   (distinct from the first word on) asking to go on counting, greedy, ``--max-tokens``.
   Client side: send time, first and last content chunk, the usage (prompt tokens less
   cached ones, completion tokens).
   Calibration of the fleet first (``calibrate``), all measured, none assumed:
   ``--calibrate`` requests one after another through the idle gateway (one unmeasured
   first) give the serving path's overhead and the TTFT and decode spreads
   (``profile.calibrate``); 3 requests straight to a worker split that overhead into the
   gateway's and the worker's; and with several workers, ``k`` requests at once straight to
   ``k`` workers (2 rounds) measure how much slower a replica serves while ``k`` of the
   workers share the machine's cores (``SimConfig.host_slowdown``: the median of measured
   over fitted service, over the same at ``k = 1``). The rate of a level is set from the
   calibration's mean shape and the slowdown at ``replicas`` busy, so a level's load is of
   what this machine can serve.
4. Prediction: the recorded arrivals and each request's measured token counts (what the
   usage ledger holds) replayed through ``planner.sim`` over the same topology (trace-driven:
   the same sample path, so the comparison is of the model, not of two random draws), twice:
   with the calibrated profile and host slowdown (``calibrated``), and with the profile alone
   (``plain``: no overhead, spread or slowdown; the model before calibration).
5. CPU per level, from ``/proc``: the gateway's, the workers' and this client's CPU seconds
   per request, and the whole machine's busy cores less ours (``foreign``: other jobs).

Figures per (replicas, load): TTFT p50/p95, time per output token p50/p95 (per request:
(last - first) / (tokens - 1)), throughput (requests completed / span), predicted and
measured, and the error in %. The first ``--warmup`` requests of a level are not counted.
``--json FILE`` appends one line per level (figures, calibration, CPU, every request).

Run from the repository root (embedded model prepared; a quiet machine: check ``uptime``)::

    .venv/bin/python bench/planner_validation.py
    .venv/bin/python bench/planner_validation.py --replicas 1 --loads 0.5 --requests 30
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from responses_chain import start_gateway  # noqa: E402

from modelgrid.core.types import RoutingHints  # noqa: E402
from modelgrid.planner import profile as profiles  # noqa: E402
from modelgrid.planner import profiling  # noqa: E402
from modelgrid.planner.sim import SimConfig, Stream, simulate  # noqa: E402
from modelgrid.routing.topology import Deployment, Region, Replica, Topology  # noqa: E402
from routing import start_workers, stop_workers  # noqa: E402

MODEL = "qwen2.5-coder-0.5b-instruct"
WORDS = profiling.WORDS[:26]  # the words the validation prompts are drawn from


@dataclass
class Measured:
    sent_s: float
    first_s: float
    last_s: float
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int


def message(i: int, words: int, rng: random.Random) -> str:
    body = " ".join(rng.choice(WORDS) for _ in range(words))
    return f"Note {i}: {body}. Now continue counting, one number per line: 1, 2, 3, 4,"


async def one(
    client: httpx.AsyncClient, key: str, text: str, max_tokens: int, t0: float = 0.0
) -> Measured:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sent = time.perf_counter() - t0
    first = last = None
    usage: dict[str, object] = {}
    headers = {"Authorization": f"Bearer {key}"} if key else {}  # a worker takes no key
    async with client.stream("POST", "/chat/completions", json=body, headers=headers) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            now = time.perf_counter() - t0
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                first = now if first is None else first
                last = now
            if chunk.get("usage"):
                usage = chunk["usage"]
    assert first is not None and last is not None, "no content"
    details = usage.get("prompt_tokens_details") or {}
    return Measured(
        sent,
        first,
        last,
        int(usage["prompt_tokens"]),  # type: ignore[call-overload]
        int(details.get("cached_tokens", 0)),  # type: ignore[union-attr]
        int(usage["completion_tokens"]),  # type: ignore[call-overload]
    )


async def run_level(
    base_url: str, key: str, rate: float, args: argparse.Namespace, seed: int
) -> list[Measured]:
    rng = random.Random(seed)
    gaps = np.random.default_rng(seed).exponential(1 / rate, args.requests)
    at = np.cumsum(gaps) - gaps[0]
    texts = [message(i, args.prompt_words, rng) for i in range(args.requests)]
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        t0 = time.perf_counter()

        async def fire(i: int) -> Measured:
            delay = at[i] - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            return await one(client, key, texts[i], args.max_tokens, t0)

        return list(await asyncio.gather(*(fire(i) for i in range(args.requests))))


def observed(rows: list[Measured]) -> list[profiles.Observed]:
    return [
        profiles.Observed(
            prompt_tokens=max(1, r.prompt_tokens - r.cached_tokens),
            output_tokens=r.completion_tokens,
            ttft_ms=(r.first_s - r.sent_s) * 1000,
            tpot_ms=(r.last_s - r.first_s) * 1000 / max(r.completion_tokens - 1, 1),
        )
        for r in rows
    ]


def service_ratio(profile: profiles.EngineProfile, rows: list[Measured]) -> float:
    """Median over ``rows`` of measured (send to last token) over fitted service time."""
    fitted = [
        float(profile.service_ms(max(1, r.prompt_tokens - r.cached_tokens), r.completion_tokens))
        for r in rows
    ]
    return float(
        np.median([(r.last_s - r.sent_s) * 1000 / f for r, f in zip(rows, fitted, strict=True)])
    )


@dataclass
class Calibration:
    profile: profiles.EngineProfile  # with the serving path's overhead and spreads
    slowdown: tuple[float, ...]  # host_slowdown, index k - 1 for k workers busy
    gateway_overhead_ms: float  # median TTFT - fitted prefill through the gateway
    worker_overhead_ms: float  # the same straight to a worker
    gateway_cpu_ms: float  # the gateway's CPU per request at idle
    mean_prompt: float  # uncached prompt tokens, mean
    mean_output: float
    rows: dict[str, list[Measured]]  # the calibration's requests: gateway, direct, k at once


async def calibrate(
    gw_url: str, gw_key: str, gw_pid: int, workers: list[str], profile: profiles.EngineProfile,
    args: argparse.Namespace,
) -> Calibration:  # fmt: skip
    """See the module docstring (step 3)."""
    rng = random.Random(args.seed * 7 + len(workers))
    text = lambda: message(rng.randrange(10**6), args.prompt_words, rng)  # noqa: E731
    async with httpx.AsyncClient(base_url=gw_url, timeout=600) as client:
        await one(client, gw_key, text(), args.max_tokens)  # unmeasured
        cpu0 = proc_cpu_s(gw_pid)
        seen = [await one(client, gw_key, text(), args.max_tokens) for _ in range(args.calibrate)]
        gw_cpu_ms = (proc_cpu_s(gw_pid) - cpu0) * 1000 / args.calibrate
    clients = [httpx.AsyncClient(base_url=u, timeout=600) for u in workers]
    try:
        direct = [await one(clients[0], "", text(), args.max_tokens) for _ in range(3)]
        ratio_1 = service_ratio(profile, direct)
        slowdown = [1.0]
        at_once: dict[str, list[Measured]] = {}
        for k in range(2, len(workers) + 1):
            rows: list[Measured] = []
            for _ in range(2):
                rows += await asyncio.gather(
                    *(one(c, "", text(), args.max_tokens) for c in clients[:k])
                )
            slowdown.append(round(service_ratio(profile, rows) / ratio_1, 4))
            at_once[f"at_once_{k}"] = rows
    finally:
        for c in clients:
            await c.aclose()
    cal = profiles.calibrate(profile, observed(seen), calibrated_at=now_iso())
    direct_cal = profiles.calibrate(profile, observed(direct))
    return Calibration(
        cal,
        tuple(slowdown) if len(workers) > 1 else (),
        cal.overhead_ms,
        direct_cal.overhead_ms,
        gw_cpu_ms,
        float(np.mean([o.prompt_tokens for o in observed(seen)])),
        float(np.mean([r.completion_tokens for r in seen])),
        {"gateway": seen, "direct": direct, **at_once},
    )


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
    rows: list[Measured],
    replicas: int,
    profile: profiles.EngineProfile,
    warmup: int,
    slowdown: tuple[float, ...] = (),
    seed: int = 0,
) -> dict[str, float]:
    topo = topology(["http://127.0.0.1:1/v1"] * replicas)
    stream = Stream(
        origin="bench",
        model=MODEL,
        workspace="bench",
        hints=RoutingHints(),
        arrivals_s=np.array([r.sent_s for r in rows]),
        prompt_tokens=np.array([max(1, r.prompt_tokens - r.cached_tokens) for r in rows]),
        output_tokens=np.array([r.completion_tokens for r in rows]),
    )
    cfg = SimConfig(gateway_overhead_ms=1.0, host_slowdown=slowdown, seed=seed)
    res = simulate(topo, [stream], {MODEL: profile}, cfg)
    served = sorted(res.served, key=lambda s: s.arrival_s)[warmup:]
    ttft = [s.ttft_ms for s in served]
    tpot = [s.tpot_ms for s in served if s.output_tokens > 1]
    span = max(s.done_s for s in served) - served[0].arrival_s
    out = figures(ttft, tpot, len(served) / span)
    out["utilisation"] = float(np.mean(list(res.utilisation().values())))
    return out


def measured(rows: list[Measured], warmup: int) -> dict[str, float]:
    counted = sorted(rows, key=lambda r: r.sent_s)[warmup:]
    ttft = [(r.first_s - r.sent_s) * 1000 for r in counted]
    tpot = [
        (r.last_s - r.first_s) * 1000 / (r.completion_tokens - 1)
        for r in counted
        if r.completion_tokens > 1
    ]
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


def measure_profile(tmp: Path, args: argparse.Namespace, tag: str) -> profiles.EngineProfile:
    if args.profile:
        return profiles.load(Path(args.profile))
    path = tmp / f"profile-{tag}.json"
    env = {**os.environ, "MODELGRID_ENGINE__N_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "modelgrid", "plan", "profile", "--prompt-tokens",
        args.profile_prompts, "--batch-sizes", "1", "--output-tokens", str(args.max_tokens),
        "--repeats", str(args.profile_repeats), "--out", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO, env=env)
    return profiles.load(path)


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
    parser.add_argument("--json", help="append one JSON line per level to this file")
    args = parser.parse_args()
    sizes = [int(x) for x in args.replicas.split(",")]
    loads = [float(x) for x in args.loads.split(",")]
    with tempfile.TemporaryDirectory(prefix="mg-bench-planner-") as name:
        tmp = Path(name)
        print(f"# planner_validation: {MODEL}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores")  # fmt: skip
        for n in sizes:
            # profiled right before each fleet: the engine's speed drifts on a shared machine
            profile = measure_profile(tmp, args, str(n))
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
                cal = asyncio.run(
                    calibrate(gw.base_url, gw.key, gw.proc.pid, [w.base_url for w in workers],
                              profile, args)
                )  # fmt: skip
                cp = cal.profile
                print(f"# calibration: overhead through the gateway {cal.gateway_overhead_ms:.0f} "
                      f"ms, straight to a worker {cal.worker_overhead_ms:.0f} ms; gateway CPU "
                      f"{cal.gateway_cpu_ms:.0f} ms/request; prefill spread "
                      f"{cp.prefill_spread[0]:.3f}..{cp.prefill_spread[-1]:.3f}, decode spread "
                      f"{cp.decode_spread[0]:.3f}..{cp.decode_spread[-1]:.3f}; host slowdown "
                      f"{cal.slowdown}")  # fmt: skip
                plain = profile.model_copy(
                    update={"overhead_ms": 0.0, "prefill_spread": (), "decode_spread": ()}
                )
                for level, load in enumerate(loads):
                    # E[service] of the calibration's mean shape, slowed as all replicas busy
                    mean_ms = float(profile.service_ms(cal.mean_prompt, cal.mean_output))
                    mean_ms *= cal.slowdown[-1] if cal.slowdown else 1.0
                    rate = load * n / (mean_ms / 1000)
                    pids = {"gateway": [gw.proc.pid], "workers": [w.proc.pid for w in workers],
                            "client": [os.getpid()]}  # fmt: skip
                    cpu0 = {k: sum(proc_cpu_s(p) for p in v) for k, v in pids.items()}
                    busy0, wall0, load0 = machine_busy_s(), time.monotonic(), os.getloadavg()[0]
                    rows = asyncio.run(
                        run_level(gw.base_url, gw.key, rate, args, args.seed * 100 + level)
                    )
                    wall = time.monotonic() - wall0
                    cpu = {k: sum(proc_cpu_s(p) for p in v) - cpu0[k] for k, v in pids.items()}
                    foreign = (machine_busy_s() - busy0 - sum(cpu.values())) / wall
                    p = predict(rows, n, cp, args.warmup, cal.slowdown, args.seed)
                    p0 = predict(rows, n, plain, args.warmup)
                    m = measured(rows, args.warmup)
                    uncached = np.mean([r.prompt_tokens - r.cached_tokens for r in rows])
                    print(f"# {n} replica(s), target load {load:.2f}: simulated utilisation "
                          f"{p['utilisation']:.2f}, {rate:.3f} requests/s offered, "
                          f"{uncached:.0f} uncached prompt tokens on average; CPU s/request: "
                          f"gateway {cpu['gateway'] / len(rows):.3f}, workers "
                          f"{cpu['workers'] / len(rows):.3f}, client "
                          f"{cpu['client'] / len(rows):.3f}; foreign {foreign:.2f} cores; "
                          f"1-min load {load0:.2f} -> {os.getloadavg()[0]:.2f}")  # fmt: skip
                    print("replicas load  requests | metric         calibrated   measured   error"
                          "  | plain      error")  # fmt: skip
                    for k in m:
                        err = 100 * (p[k] - m[k]) / m[k]
                        err0 = 100 * (p0[k] - m[k]) / m[k]
                        print(
                            f"{n:8d} {load:4.2f}  {len(rows) - args.warmup:8d} | {k:14} "
                            f"{p[k]:9.3f}  {m[k]:9.3f}  {err:+6.1f}%  | {p0[k]:9.3f} "
                            f"{err0:+6.1f}%"
                        )
                    sys.stdout.flush()
                    if args.json:
                        record = {
                            "replicas": n, "load": load, "rate_rps": rate, "at": now_iso(),
                            "predicted": p, "plain": p0, "measured": m,
                            "cpu_s": cpu, "foreign_cores": foreign, "wall_s": wall,
                            "load_avg": [load0, os.getloadavg()[0]],
                            "calibration": {
                                "gateway_overhead_ms": cal.gateway_overhead_ms,
                                "worker_overhead_ms": cal.worker_overhead_ms,
                                "gateway_cpu_ms": cal.gateway_cpu_ms,
                                "slowdown": cal.slowdown,
                                "prefill_spread": cp.prefill_spread,
                                "decode_spread": cp.decode_spread,
                                "prefill": cp.prefill, "decode": cp.decode,
                                "rows": {k: [dataclasses.asdict(r) for r in v]
                                         for k, v in cal.rows.items()},
                            },
                            "rows": [dataclasses.asdict(r) for r in rows],
                        }  # fmt: skip
                        with open(args.json, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps(record) + "\n")
            finally:
                if gw is not None:
                    gw.proc.terminate()
                    gw.proc.wait(30)
                stop_workers(workers)


if __name__ == "__main__":
    main()
