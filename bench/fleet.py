"""The fleet on Ray Serve, measured on a real 3-node Ray cluster on this machine.

The cluster is ``tests/fleet/cluster.py``'s: ``ray start --head`` (Serve's controller and
HTTP proxy) and two worker nodes with the ``modelgrid_engine`` resource, all on this host;
models are deployed with ``modelgrid fleet up``. Figures, each printed as a RESULT line:

1. **Scaling**: requests/s and TTFT p50/p95 of 1, 2 and 3 Serve replicas of the packaged
   model (llama.cpp, one thread a replica), ``--requests`` streamed chat requests with
   distinct short prompts, ``--max-tokens`` greedy tokens, ``--concurrency`` in flight,
   through Serve's proxy.
2. **The Serve hop**: the same model, one request at a time, through Serve's proxy against a
   ``modelgrid engine`` worker directly (TTFT and whole-request latency, p50); and the
   per-request cost of the hop alone, with the scripted engine answering at once
   (``--hop-requests`` non-streamed calls each way, p50 latency, the difference).
3. **Replacement**: a replica of the real model SIGKILLed, and a worker node SIGKILLed (its
   raylet and every process it started): seconds until Serve's replacement process exists,
   and until it answers a request (a response names a replica not seen before the kill).
4. **Prefix affinity through Serve**: ``--affinity-requests`` requests sharing
   ``--prompts`` long system prompts, sent to Serve's proxy with the gateway's prefix
   fingerprint header (``routing.prefix.fingerprint``, ``engines.upstream.prefix_key``), to
   3 replicas of the scripted engine routed by ``PrefixAffinityRouter`` against Serve's
   default router (power of two choices, which routes blind to prompts, like round robin).
   "sticky": the request went to the replica that served its system prompt last; "owner":
   the replica had served that system prompt before (any time); "KV reuse": the replica's
   previous request had the same system prompt (what llama.cpp's single cached prompt
   needs), as ``bench/routing.py`` counts them.

5. **Prefix affinity through the gateway, with the real model**: a gateway (in this process)
   whose topology names the Serve application as a pool with ``prefix_header =
   "x-session-id"``; ``--gateway-requests`` non-streamed requests sharing
   ``--gateway-prompts`` long system prompts, 2 at a time, to 2 replicas of the packaged model, routed by
   ``PrefixAffinityRouter`` and then by Serve's default router. llama.cpp reports the prompt
   tokens it reused (``usage.prompt_tokens_details.cached_tokens``, through the gateway):
   "KV hits" are requests with more than 64 cached tokens (the system prompt reused; the
   chat template's first tokens alone are fewer), with the share of prompt tokens cached and
   the TTFT p50 (the whole answer: 4 tokens).

Run from the repository root (``.venv`` with the ``fleet`` extra, the model prepared)::

    .venv/bin/python bench/fleet.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median, quantiles

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.fleet.cluster import (  # noqa: E402
    BIN,
    ENV,
    RayCluster,
    kill_node_of,
    replica_pids,
    wait_for_replicas,
)
from tests.support import free_port  # noqa: E402

from modelgrid.engines.upstream import prefix_key  # noqa: E402
from modelgrid.routing.prefix import fingerprint  # noqa: E402

QWEN = "qwen2.5-coder-0.5b-instruct"
REPLICA_HEADER = "x-modelgrid-serve-replica"


@dataclass
class Call:
    ttft_s: float
    total_s: float
    replica: str
    ok: bool


async def chat(
    client: httpx.AsyncClient,
    url: str,
    model: str,
    messages: list[dict[str, str]],
    *,
    max_tokens: int,
    stream: bool = True,
    headers: dict[str, str] | None = None,
) -> Call:
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    t0 = time.perf_counter()
    ttft = None
    async with client.stream("POST", url, json=body, headers=headers or {}) as r:
        async for line in r.aiter_lines():
            if ttft is None and line.startswith("data: {") and '"content"' in line:
                ttft = time.perf_counter() - t0
        total = time.perf_counter() - t0
        return Call(ttft or total, total, r.headers.get(REPLICA_HEADER, ""), r.status_code == 200)


def pct(values: list[float], q: int) -> float:
    return quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def run_load(url: str, model: str, n: int, concurrency: int, max_tokens: int) -> dict:
    sem = asyncio.Semaphore(concurrency)
    calls: list[Call] = []
    async with httpx.AsyncClient(timeout=300) as client:

        async def one(i: int) -> None:
            async with sem:
                q = f"Request {i}: name one prime number above {i * 7}."
                calls.append(
                    await chat(
                        client, url, model, [{"role": "user", "content": q}], max_tokens=max_tokens
                    )
                )

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    ttfts = [c.ttft_s * 1000 for c in calls if c.ok]
    return {
        "ok": sum(c.ok for c in calls),
        "rps": len(ttfts) / wall,
        "ttft_p50_ms": pct(ttfts, 50),
        "ttft_p95_ms": pct(ttfts, 95),
    }


async def sequential(url: str, model: str, n: int, max_tokens: int, stream: bool) -> list[Call]:
    out = []
    async with httpx.AsyncClient(timeout=300) as client:
        for i in range(n):
            msg = [{"role": "user", "content": f"Say the number {i}."}]
            out.append(await chat(client, url, model, msg, max_tokens=max_tokens, stream=stream))
    return out


def spawn_worker(model: str, engine: str, port: int) -> subprocess.Popen[bytes]:
    args = [str(BIN / "modelgrid"), "engine", "--model", model, "--port", str(port)]
    if engine == "fake":
        args += ["--engine", "fake"]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"worker for {model} did not become ready")


async def replacement(url: str, model: str, seen: set[str], killed: set[int], n: int) -> tuple:
    """Seconds until a new replica process exists and until a new replica answers."""
    t0 = time.monotonic()
    t_proc = t_serving = None
    async with httpx.AsyncClient(timeout=60) as client:
        while t_serving is None and time.monotonic() - t0 < 180:
            if t_proc is None and len([p for p in replica_pids(model) if p not in killed]) >= n:
                t_proc = time.monotonic() - t0
            try:
                c = await chat(
                    client, url, model, [{"role": "user", "content": "Hi"}], max_tokens=1
                )
                if c.ok and c.replica and c.replica not in seen:
                    t_serving = time.monotonic() - t0
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    return t_proc, t_serving


async def replicas_seen(url: str, model: str, want: int) -> set[str]:
    seen: set[str] = set()
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(60):
            batch = await asyncio.gather(
                *(
                    chat(client, url, model, [{"role": "user", "content": "Hi"}], max_tokens=1)
                    for _ in range(want)
                )
            )
            seen |= {c.replica for c in batch if c.ok}
            if len(seen) >= want:
                break
    return seen


async def affinity(url: str, model: str, args: argparse.Namespace) -> dict:
    rng = random.Random(7)
    systems = [
        f"System prompt {k}: " + " ".join(rng.choice("abcdefgh") * 5 for _ in range(200))
        for k in range(args.prompts)
    ]
    order = [i % args.prompts for i in range(args.affinity_requests)]
    rng.shuffle(order)  # each system prompt equally often, in a random order
    owners: dict[str, set[int]] = {}
    last: dict[str, int] = {}
    server_of: dict[int, str] = {}
    owner_hits = reuse_hits = sticky_hits = 0
    sem = asyncio.Semaphore(args.concurrency)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(i: int, k: int) -> None:
            nonlocal owner_hits, reuse_hits, sticky_hits
            messages = [
                {"role": "system", "content": systems[k]},
                {"role": "user", "content": f"question {i}"},
            ]
            text = "".join(f"{m['role']}\n{m['content']}\n\x00" for m in messages)
            headers = {"x-session-id": prefix_key(fingerprint(text))}
            async with sem:
                c = await chat(client, url, model, messages, max_tokens=4, headers=headers)
            owner_hits += k in owners.get(c.replica, set())
            reuse_hits += last.get(c.replica) == k
            sticky_hits += server_of.get(k) == c.replica
            owners.setdefault(c.replica, set()).add(k)
            last[c.replica] = k
            server_of[k] = c.replica

        await asyncio.gather(*(one(i, k) for i, k in enumerate(order)))
    n = len(order)
    return {
        "sticky": sticky_hits / n,
        "owner": owner_hits / n,
        "kv_reuse": reuse_hits / n,
        "replicas": len(owners),
    }


async def through_gateway(base: str, key: str, args: argparse.Namespace) -> dict:
    rng = random.Random(11)
    words = ["alpha", "beta", "gamma", "delta", "kappa", "sigma", "omega", "theta"]
    systems = [
        f"You are assistant number {k}. " + " ".join(rng.choice(words) for _ in range(220))
        for k in range(args.gateway_prompts)
    ]
    order = [i % args.gateway_prompts for i in range(args.gateway_requests)]
    rng.shuffle(order)  # each system prompt equally often, in a random order
    sem = asyncio.Semaphore(2)
    rows: list[tuple[int, int, float]] = []
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:

        async def one(i: int, k: int) -> None:
            body = {
                "model": QWEN,
                "messages": [
                    {"role": "system", "content": systems[k]},
                    {"role": "user", "content": f"Question {i}: say a number."},
                ],
                "max_tokens": 4,
                "temperature": 0,
            }
            async with sem:
                t0 = time.perf_counter()
                r = await client.post(
                    "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
                )
                took = time.perf_counter() - t0
            usage = r.json()["usage"]
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            rows.append((usage["prompt_tokens"], cached, took))

        await asyncio.gather(*(one(i, k) for i, k in enumerate(order)))
    return {
        "kv_hits": sum(c > 64 for _, c, _ in rows) / len(rows),
        "cached_share": sum(c for _, c, _ in rows) / sum(p for p, _, _ in rows),
        "latency_p50_ms": median(t for _, _, t in rows) * 1000,
    }


def gateway_phase(cluster: RayCluster, args: argparse.Namespace) -> None:
    import tempfile

    from tests.conftest import make_settings
    from tests.support import ThreadServer, create_key

    from modelgrid.routing.topology import Deployment, Region, Replica, Topology, save

    tmp = Path(tempfile.mkdtemp(prefix="fleet-gw"))
    path = tmp / "topology.toml"
    url = f"{cluster.proxy_url}/{QWEN}/v1"
    pool = Replica("ray", "upstream", url, attempts=3, prefix_header="x-session-id")
    t = Topology((Region("ray"),), gateway_region="ray")
    save(t.with_deployment(Deployment(QWEN, "ray", (pool,))), path)
    settings = make_settings(tmp, topology_file=path)
    key = create_key(settings.database_url, name="bench").plaintext
    gateway = ThreadServer(settings, lambda _s: []).start()
    try:
        for label, flag in (("prefix_affinity", "--prefix-affinity"), ("serve_default", "--no-prefix-affinity")):  # fmt: skip
            cluster.fleet("up", QWEN, "--min-replicas=2", "--max-replicas=2", flag,
                          "--num-cpus=0.5", "--threads=1", timeout_s=300)  # fmt: skip
            wait_for_replicas(QWEN, 2, 120)
            time.sleep(1.0)  # the gateway's probe sees the application up
            r = asyncio.run(through_gateway(gateway.base_url, key, args))
            print(
                f"RESULT gateway_affinity router={label} kv_hits={r['kv_hits']:.2f} "
                f"cached_share={r['cached_share']:.2f} latency_p50_ms={r['latency_p50_ms']:.0f}",
                flush=True,
            )
            # Serve's proxy keeps the request router it built for an application name, so a
            # change of router needs Serve itself restarted (no name: every application)
            cluster.fleet("down")
            wait_for_replicas(QWEN, 0, 60)
    finally:
        gateway.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=24)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--hop-requests", type=int, default=200)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--affinity-requests", type=int, default=120)
    p.add_argument("--gateway-requests", type=int, default=24)
    p.add_argument("--gateway-prompts", type=int, default=2)
    p.add_argument("--only", choices=["gateway"], help="Run one phase only.")
    args = p.parse_args()
    print(f"load before: {uptime()}  cores: {os.cpu_count()}")
    cluster = RayCluster()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        cluster.start()
        if args.only == "gateway":
            gateway_phase(cluster, args)
            return
        proxy = cluster.proxy_url
        qwen_url = f"{proxy}/{QWEN}/v1/chat/completions"

        # 1. scaling
        for n in (1, 2, 3):
            cluster.fleet("up", QWEN, f"--min-replicas={n}", f"--max-replicas={n}",
                          "--num-cpus=0.5", "--threads=1", timeout_s=300)  # fmt: skip
            wait_for_replicas(QWEN, n, 120)
            asyncio.run(run_load(qwen_url, QWEN, 4, 2, 2))  # warm-up
            r = asyncio.run(
                run_load(qwen_url, QWEN, args.requests, args.concurrency, args.max_tokens)
            )
            print(
                f"RESULT scaling replicas={n} ok={r['ok']}/{args.requests} "
                f"rps={r['rps']:.2f} ttft_p50_ms={r['ttft_p50_ms']:.0f} "
                f"ttft_p95_ms={r['ttft_p95_ms']:.0f}",
                flush=True,
            )

        # 2. the Serve hop: real model (1 replica) vs a direct worker; then the hop alone
        cluster.fleet("up", QWEN, "--min-replicas=1", "--max-replicas=1",
                      "--num-cpus=0.5", "--threads=1", timeout_s=300)  # fmt: skip
        wait_for_replicas(QWEN, 1, 120)
        port = free_port()
        workers.append(spawn_worker(QWEN, "llamacpp", port))
        direct = f"http://127.0.0.1:{port}/v1/chat/completions"
        for label, url in (("serve", qwen_url), ("direct", direct)) * 2:
            calls = asyncio.run(sequential(url, QWEN, 10, args.max_tokens, True))
            print(
                f"RESULT model_hop via={label} ttft_p50_ms="
                f"{median(c.ttft_s for c in calls) * 1000:.0f} total_p50_ms="
                f"{median(c.total_s for c in calls) * 1000:.0f}",
                flush=True,
            )
        workers.pop().terminate()
        cluster.up_fake("fake-hop", "--min-replicas=1", "--max-replicas=1")
        fport = free_port()
        workers.append(spawn_worker("fake-hop", "fake", fport))
        hop: dict[str, float] = {}
        for label, url in (
            ("serve", f"{proxy}/fake-hop/v1/chat/completions"),
            ("direct", f"http://127.0.0.1:{fport}/v1/chat/completions"),
        ) * 2:
            calls = asyncio.run(sequential(url, "fake-hop", args.hop_requests, 8, False))
            hop[label] = median(c.total_s for c in calls) * 1000
        print(
            f"RESULT hop serve_p50_ms={hop['serve']:.2f} direct_p50_ms={hop['direct']:.2f} "
            f"hop_cost_ms={hop['serve'] - hop['direct']:.2f}",
            flush=True,
        )
        workers.pop().terminate()
        cluster.fleet("down", "fake-hop")

        # 3. replacement of a killed replica, then of a killed node
        cluster.fleet("up", QWEN, "--min-replicas=2", "--max-replicas=2",
                      "--num-cpus=0.5", "--threads=1", timeout_s=300)  # fmt: skip
        pids, _ = wait_for_replicas(QWEN, 2, 120)
        seen = asyncio.run(replicas_seen(qwen_url, QWEN, 2))
        os.kill(pids[0], signal.SIGKILL)
        t_proc, t_serving = asyncio.run(replacement(qwen_url, QWEN, seen, {pids[0]}, 2))
        print(f"RESULT replica_killed process_s={t_proc:.2f} serving_s={t_serving:.2f}")
        pids, _ = wait_for_replicas(QWEN, 2, 120, without={pids[0]})
        seen = asyncio.run(replicas_seen(qwen_url, QWEN, 2))
        killed = set(kill_node_of(pids[0]))
        t_proc, t_serving = asyncio.run(replacement(qwen_url, QWEN, seen, killed, 2))
        print(f"RESULT node_killed process_s={t_proc:.2f} serving_s={t_serving:.2f}")
        cluster.fleet("down", QWEN)
        cluster.add_worker()

        # 4. prefix affinity through Serve, against Serve's default router
        for label, flag in (("prefix_affinity", "--prefix-affinity"), ("serve_default", "--no-prefix-affinity")):  # fmt: skip
            app = f"aff-{label.replace('_', '-')}"
            cluster.up_fake(app, "--min-replicas=3", "--max-replicas=3", flag,
                            "--fake-token-delay-s=0.02")  # fmt: skip
            wait_for_replicas(app, 3, 60)
            r = asyncio.run(affinity(f"{proxy}/{app}/v1/chat/completions", app, args))
            print(
                f"RESULT affinity router={label} sticky={r['sticky']:.2f} owner={r['owner']:.2f} "
                f"kv_reuse={r['kv_reuse']:.2f} replicas_used={r['replicas']}",
                flush=True,
            )
            cluster.fleet("down", app)

        # 5. prefix affinity through the gateway, real model, llama.cpp's cached tokens
        gateway_phase(cluster, args)
    finally:
        for w in workers:
            w.terminate()
        cluster.stop()
    print(f"load after: {uptime()}")


if __name__ == "__main__":
    main()
