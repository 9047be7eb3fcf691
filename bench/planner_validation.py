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
4. Prediction: the recorded arrivals and each request's measured token counts (what the
   usage ledger holds) replayed through ``planner.sim`` over the same topology (trace-driven:
   the same sample path, so the comparison is of the model, not of two random draws).

Figures per (replicas, load): TTFT p50/p95, time per output token p50/p95 (per request:
(last - first) / (tokens - 1)), throughput (requests completed / span), predicted and
measured, and the error in %. The first ``--warmup`` requests of a level are not counted.

Run from the repository root (embedded model prepared; a quiet machine: check ``uptime``)::

    .venv/bin/python bench/planner_validation.py
    .venv/bin/python bench/planner_validation.py --replicas 1 --loads 0.5 --requests 30
"""

from __future__ import annotations

import argparse
import asyncio
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
    client: httpx.AsyncClient, key: str, text: str, max_tokens: int, t0: float
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
    async with client.stream(
        "POST", "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
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


def predict(
    rows: list[Measured], replicas: int, profile: profiles.EngineProfile, warmup: int
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
    res = simulate(topo, [stream], {MODEL: profile}, SimConfig(gateway_overhead_ms=1.0))
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
    args = parser.parse_args()
    sizes = [int(x) for x in args.replicas.split(",")]
    loads = [float(x) for x in args.loads.split(",")]
    with tempfile.TemporaryDirectory(prefix="mg-bench-planner-") as name:
        tmp = Path(name)
        print(f"# planner_validation: {MODEL}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores")  # fmt: skip
        print("replicas load  requests | metric         predicted   measured   error")
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
                for level, load in enumerate(loads):
                    # E[service] of the mean shape: prompt tokens seen through the template
                    shape_prompt = 1.35 * args.prompt_words + 40
                    mean_ms = float(profile.service_ms(shape_prompt, args.max_tokens))
                    rate = load * n / (mean_ms / 1000)
                    rows = asyncio.run(
                        run_level(gw.base_url, gw.key, rate, args, args.seed * 100 + level)
                    )
                    p = predict(rows, n, profile, args.warmup)
                    m = measured(rows, args.warmup)
                    uncached = np.mean([r.prompt_tokens - r.cached_tokens for r in rows])
                    print(f"# {n} replica(s), target load {load:.2f}: simulated utilisation "
                          f"{p['utilisation']:.2f}, {rate:.3f} requests/s offered, "
                          f"{uncached:.0f} uncached prompt tokens on average")  # fmt: skip
                    for k in m:
                        err = 100 * (p[k] - m[k]) / m[k]
                        print(
                            f"{n:8d} {load:4.2f}  {len(rows) - args.warmup:8d} | {k:14} "
                            f"{p[k]:9.3f}  {m[k]:9.3f}  {err:+6.1f}%"
                        )
                    sys.stdout.flush()
            finally:
                if gw is not None:
                    gw.proc.terminate()
                    gw.proc.wait(30)
                stop_workers(workers)


if __name__ == "__main__":
    main()
