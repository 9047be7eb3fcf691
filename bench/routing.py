"""Prefix-aware routing vs round-robin over real ``modelgrid engine`` workers (llama.cpp).

Workload: many chat requests sharing a few long system prompts (``--prompts``, each
~``--system-chars`` characters, distinct from their first characters on) with a short,
unique user question each, greedy, ``--max-tokens`` output tokens. Replicas: ``--workers``
``python -m modelgrid engine`` processes with the packaged model on loopback ports, one
llama.cpp thread each (``MODELGRID_ENGINE__N_THREADS=1``). llama.cpp keeps the previous
prompt's KV cache and reuses its longest common prefix with the next prompt, so a request
landing on a replica whose previous request had the same system prompt skips that prefill.

Both policies run in this process through ``routing.Grid`` (the gateway's routing layer,
``UpstreamEngine`` replicas) over the SAME workers, in the SAME run, interleaved in blocks of
``--block`` requests (cache_aware, round_robin, cache_aware, …; the request order is one
seeded shuffle, dealt to the blocks alternately), ``--concurrency`` requests in flight.
The first block of each side is a warm-up and not measured.

Figures per policy: TTFT (request → first token, as the routed engine yields it) p50 / p95 /
mean; "routed to prefix owner": the replica had served the same system prompt before in the
run; "KV reuse": the replica's previous request had the same system prompt (the condition
for llama.cpp's prefix reuse with its single cached prompt). The workers do not report
cached tokens (the llama.cpp engine's usage has no ``cached_tokens``), so reuse is inferred.
RESULT lines: cache_aware / round_robin ratios of TTFT p50 and p95.

Run from the repository root (embedded model prepared)::

    .venv/bin/python bench/routing.py
    .venv/bin/python bench/routing.py --requests 48 --prompts 2 --workers 2 --concurrency 1
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, quantiles

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from modelgrid.config import RoutingSettings  # noqa: E402
from modelgrid.core.types import ChatMessage, InferenceRequest, SamplingParams  # noqa: E402
from modelgrid.routing import Grid, placement_of  # noqa: E402
from modelgrid.routing.topology import Deployment, Region, Replica, Topology  # noqa: E402

MODEL = "qwen2.5-coder-0.5b-instruct"
POLICIES = ("cache_aware", "round_robin")
TOPICS = [
    "a payments service written in Go with PostgreSQL, Redis and a Kafka event bus",
    "a React Native mobile app for field engineers that syncs work orders offline",
    "a Rust command-line tool that migrates and validates large CSV and Parquet files",
    "a Django monolith being split into FastAPI services behind an API gateway",
    "an embedded C firmware for a battery management system on an ARM Cortex-M4",
    "a data platform on Spark and Airflow that builds daily finance reports",
]
RULES = [
    "Answer in English, concisely, with code blocks where code helps.",
    "Prefer the standard library and the project's existing dependencies.",
    "Point out security problems (injection, secrets in code, missing authorization).",
    "Keep functions small; name things for what they mean in the domain.",
    "Write tests first when fixing a bug; show the failing test, then the fix.",
    "Explain trade-offs briefly when there is more than one reasonable design.",
    "Never invent APIs: say so when you are unsure a function exists.",
    "Follow the repository's formatting and lint rules; do not reformat unrelated code.",
]


def system_prompt(k: int, chars: int) -> str:
    """A long system prompt whose very first words differ per ``k`` (distinct prefixes)."""
    rng = random.Random(k)
    lines = [f"You are the code assistant of team {k} working on {TOPICS[k % len(TOPICS)]}."]
    while sum(len(x) + 1 for x in lines) < chars:
        lines.append(rng.choice(RULES) + f" (guideline {len(lines)}, team {k})")
    return "\n".join(lines)[:chars]


def question(i: int) -> str:
    return f"Question {i}: in one sentence, what is the first thing to check in module m{i}?"


# --- workers ---------------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: object

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_workers(n: int, threads: int, n_ctx: int, log_dir: Path) -> list[Worker]:
    workers = []
    for i in range(n):
        port = free_port()
        log = open(log_dir / f"worker-{i}.log", "w+b")  # noqa: SIM115
        env = {
            **os.environ,
            "MODELGRID_ENGINE__N_THREADS": str(threads),
            "MODELGRID_ENGINE__N_CTX": str(n_ctx),
        }
        cmd = [sys.executable, "-m", "modelgrid", "engine", "--model", MODEL, "--port", str(port)]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        workers.append(Worker(f"w{i}", port, proc, log))
    deadline = time.monotonic() + 300
    for w in workers:
        while True:
            if w.proc.poll() is not None:
                raise SystemExit(f"worker {w.name} exited; see {log_dir}")
            try:
                if httpx.get(f"http://127.0.0.1:{w.port}/health/ready", timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {w.name} not ready; see {log_dir}")
            time.sleep(0.5)
    return workers


def stop_workers(workers: list[Worker]) -> None:
    for w in workers:
        w.proc.terminate()
    for w in workers:
        try:
            w.proc.wait(20)
        except subprocess.TimeoutExpired:
            w.proc.kill()


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Sample:
    policy: str
    prompt: int
    replica: str
    ttft_s: float
    owner_hit: bool
    kv_reuse: bool


@dataclass
class Book:
    """What each replica served, in order, across both policies (the caches are shared)."""

    served: dict[str, set[int]] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)


async def one(
    grid: Grid, policy: str, k: int, i: int, args: argparse.Namespace, book: Book
) -> Sample:
    engine = grid.engines()[0]
    request = InferenceRequest(
        request_id=f"bench-{policy}-{i}",
        model=MODEL,
        messages=[
            ChatMessage("system", system_prompt(k, args.system_chars)),
            ChatMessage("user", question(i)),
        ],
        sampling=SamplingParams(max_tokens=args.max_tokens, temperature=0.0, seed=0),
    )
    started = time.perf_counter()
    prepared = engine.prepare(request)
    placement = placement_of(prepared)
    assert placement is not None
    rid = placement.replica_id
    owner_hit = k in book.served.get(rid, set())
    kv_reuse = book.last.get(rid) == k
    book.served.setdefault(rid, set()).add(k)
    book.last[rid] = k  # claimed now: the next request on this replica sees this prompt
    ttft = None
    async for delta in engine.stream(prepared):
        if ttft is None and delta.completion_tokens:
            ttft = time.perf_counter() - started
    return Sample(policy, k, rid, ttft if ttft is not None else float("nan"), owner_hit, kv_reuse)


def grids(workers: list[Worker], args: argparse.Namespace) -> dict[str, Grid]:
    topology = Topology(
        regions=(Region("local"),),
        deployments=(
            Deployment(
                MODEL, "local", tuple(Replica(w.name, "upstream", w.base_url) for w in workers)
            ),
        ),
    )
    return {
        p: Grid(
            topology,
            config=RoutingSettings(
                policy=p,
                max_imbalance=args.max_imbalance,
                block_chars=256,
                max_prefix_chars=4096,
            ),
            rng=random.Random(args.seed),
        )
        for p in POLICIES
    }


async def run(workers: list[Worker], args: argparse.Namespace) -> list[Sample]:
    gs = grids(workers, args)
    for g in gs.values():  # start the replicas' engines; no probes needed here
        await g.apply(g.topology)
    rng = random.Random(args.seed)
    per_policy = args.requests + args.block  # plus one warm-up block each
    order = [rng.randrange(args.prompts) for _ in range(2 * per_policy)]
    book = Book()
    samples: list[Sample] = []
    sem = asyncio.Semaphore(args.concurrency)
    i = 0
    for block in range(2 * per_policy // args.block):
        policy = POLICIES[block % 2]
        tasks = []
        for _ in range(args.block):

            async def go(k: int = order[i], n: int = i, p: str = policy) -> Sample:
                async with sem:
                    return await one(gs[p], p, k, n, args, book)

            tasks.append(asyncio.create_task(go()))
            i += 1
        done = await asyncio.gather(*tasks)
        if block >= 2:  # the first block of each policy warms up
            samples.extend(done)
        print(
            f"block {block:2d} {policy:12s} "
            + " ".join(f"{s.replica}:p{s.prompt}:{s.ttft_s * 1000:.0f}ms" for s in done),
            flush=True,
        )
    for g in gs.values():
        await g.aclose()
    return samples


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return quantiles(values, n=100, method="inclusive")[q - 1]


def report(samples: list[Sample], args: argparse.Namespace) -> None:
    print()
    print(
        f"{'policy':12s} {'n':>4s} {'TTFT p50 ms':>12s} {'p95 ms':>8s} {'mean ms':>8s} "
        f"{'routed to owner':>16s} {'KV reuse':>9s}"
    )
    stats = {}
    for p in POLICIES:
        mine = [s for s in samples if s.policy == p]
        ttfts = [s.ttft_s * 1000 for s in mine]
        stats[p] = (pct(ttfts, 50), pct(ttfts, 95))
        owner = sum(s.owner_hit for s in mine) / len(mine)
        reuse = sum(s.kv_reuse for s in mine) / len(mine)
        print(
            f"{p:12s} {len(mine):4d} {stats[p][0]:12.0f} {stats[p][1]:8.0f} {mean(ttfts):8.0f} "
            f"{owner:16.0%} {reuse:9.0%}"
        )
    ca, rr = stats["cache_aware"], stats["round_robin"]
    print(f"RESULT ttft_p50 cache_aware/round_robin = {ca[0] / rr[0]:.3f}")
    print(f"RESULT ttft_p95 cache_aware/round_robin = {ca[1] / rr[1]:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads per worker")
    ap.add_argument("--prompts", type=int, default=2, help="distinct system prompts")
    ap.add_argument("--system-chars", type=int, default=1500)
    ap.add_argument("--requests", type=int, default=32, help="measured requests per policy")
    ap.add_argument("--block", type=int, default=8, help="requests per interleaved block")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=4)
    ap.add_argument("--max-imbalance", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if args.requests % args.block:
        ap.error("--requests must be a multiple of --block")
    print(
        f"{datetime.date.today()} {platform.machine()} {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}; {args.workers} workers x {args.threads} thread(s), "
        f"{args.prompts} system prompts of {args.system_chars} chars, {args.requests} "
        f"requests/policy in blocks of {args.block}, concurrency {args.concurrency}, "
        f"{args.max_tokens} output tokens",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="mg-bench-routing-") as tmp:
        workers = start_workers(args.workers, args.threads, args.n_ctx, Path(tmp))
        try:
            samples = asyncio.run(run(workers, args))
        finally:
            stop_workers(workers)
    report(samples, args)


if __name__ == "__main__":
    main()
