"""A multi-turn Responses API conversation (``previous_response_id``) on the real model: TTFT
and cached prompt tokens per turn, with and without replica affinity.

Replicas: ``--workers`` ``python -m modelgrid engine`` processes with the packaged model
(llama.cpp keeps the previous prompt's KV cache and reuses its longest common prefix with the
next prompt; the worker reports that prefix as ``cached_tokens``). Two ``modelgrid serve``
gateways route to the SAME workers (one region, the workers as ``upstream`` replicas, no
model of their own): one with the default ``cache_aware`` policy, which sends a chained turn
to the replica of the previous turn (``RoutingHints.affinity_replica``), and one with
``round_robin``, which ignores it (the baseline: a router that knows nothing of the chain).
Chains alternate between the two gateways (affinity, baseline, affinity, …), ``--chains``
each; a chain is ``--turns`` turns, each streamed through the official ``openai`` SDK
(``client.responses.stream``) with the previous turn's id, greedy, ``--max-tokens`` output
tokens; the chain's instructions (~``--instruction-chars`` characters) are unique to it.

Figures per side and turn: TTFT (request → first ``response.output_text.delta``, client
side) median over the chains, and ``usage.input_tokens`` / ``input_tokens_details.
cached_tokens`` medians. RESULT lines: affinity / baseline ratio of TTFT per turn.

Run from the repository root (embedded model prepared)::

    .venv/bin/python bench/responses_chain.py
    .venv/bin/python bench/responses_chain.py --chains 2 --turns 5 --workers 2
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import httpx
import openai

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from modelgrid.routing.topology import (  # noqa: E402
    Deployment,
    Region,
    Replica,
    Topology,
    save,
)
from routing import free_port, start_workers, stop_workers  # noqa: E402

MODEL = "qwen2.5-coder-0.5b-instruct"
SIDES = ("affinity", "baseline")
QUESTIONS = [
    "Which database would you pick for the order history, and why?",
    "How should the service authenticate calls from the mobile app?",
    "What would you cache, and for how long?",
    "How do we roll out a schema change without downtime?",
    "Which three metrics would you alert on first?",
    "How should retries be bounded so a slow dependency does not cascade?",
    "What goes into the on-call runbook?",
    "How do we test the failover path before we need it?",
]


def instructions(chain: int, chars: int) -> str:
    head = (
        f"Session {chain}: you are the lead architect reviewing the design of system #{chain}, "
        "a retail platform that serves web and mobile clients in three regions. "
    )
    rules = (
        "Answer as a senior engineer would: name the concrete technology, the trade-off, and "
        "the failure mode you guard against; keep each answer to a few sentences. "
    )
    text = head
    while len(text) < chars:
        text += rules
    return text[:chars]


@dataclass
class Gateway:
    side: str
    port: int
    proc: subprocess.Popen[bytes]
    key: str
    folder: Path
    """Its data dir: ``mg.db`` (the usage ledger) and ``topology.toml``."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def start_gateway(side: str, worker_ports: list[int], tmp: Path) -> Gateway:
    folder = tmp / side
    folder.mkdir()
    topology = Topology(
        (Region("bench", "", ""),),
        (
            Deployment(
                MODEL,
                "bench",
                tuple(
                    Replica(f"w{i}", "upstream", base_url=f"http://127.0.0.1:{p}/v1")
                    for i, p in enumerate(worker_ports)
                ),
            ),
        ),
        gateway_region="bench",
    )
    save(topology, folder / "topology.toml")
    env = {
        **os.environ,
        "MODELGRID_DATA_DIR": str(folder),
        "MODELGRID_DATABASE__URL": f"sqlite+aiosqlite:///{folder / 'mg.db'}",
        "MODELGRID_TOPOLOGY_FILE": str(folder / "topology.toml"),
        "MODELGRID_ENGINE__MODELS": "[]",
        "MODELGRID_ENGINE__EMBEDDING_MODELS": "[]",
        "MODELGRID_ROUTING__POLICY": "cache_aware" if side == "affinity" else "round_robin",
    }
    port = free_port()
    log = open(folder / "serve.log", "w+b")  # noqa: SIM115
    cmd = [sys.executable, "-m", "modelgrid", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, cwd=REPO, env=env)
    assert proc.stdout is not None
    key = ""
    deadline = time.monotonic() + 120
    while not key and time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line and proc.poll() is not None:
            raise SystemExit(f"gateway {side} exited; see {folder / 'serve.log'}")
        if line.startswith("API key"):
            key = line.split(":", 1)[1].strip()
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).is_success:
                return Gateway(side, port, proc, key, folder)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gateway {side} not ready; see {folder / 'serve.log'}")


@dataclass
class Turn:
    side: str
    chain: int
    turn: int
    ttft_ms: float
    input_tokens: int
    cached_tokens: int


def run_chain(gw: Gateway, chain: int, args: argparse.Namespace) -> list[Turn]:
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.key, max_retries=0, timeout=300)
    previous: str | None = None
    out = []
    for t in range(args.turns):
        started = time.perf_counter()
        ttft = None
        with client.responses.stream(
            model=MODEL,
            instructions=instructions(chain, args.instruction_chars),
            input=QUESTIONS[t % len(QUESTIONS)],
            previous_response_id=previous,
            temperature=0,
            max_output_tokens=args.max_tokens,
        ) as stream:
            final = None
            for event in stream:
                if ttft is None and event.type == "response.output_text.delta":
                    ttft = (time.perf_counter() - started) * 1000
                if event.type in ("response.completed", "response.incomplete"):
                    final = event.response  # incomplete: max_output_tokens reached
        assert final is not None and final.usage is not None and ttft is not None
        previous = final.id
        cached = final.usage.input_tokens_details.cached_tokens
        out.append(Turn(gw.side, chain, t + 1, ttft, final.usage.input_tokens, cached))
    return out


def report(turns: list[Turn], args: argparse.Namespace) -> None:
    print(
        f"# responses_chain: {args.chains} chains x {args.turns} turns per side, "
        f"{args.workers} workers, {args.max_tokens} output tokens, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    print("side      turn  ttft_ms_p50  input_tokens  cached_tokens")
    by: dict[tuple[str, int], list[Turn]] = {}
    for x in turns:
        by.setdefault((x.side, x.turn), []).append(x)
    for side in SIDES:
        for t in range(1, args.turns + 1):
            xs = by[(side, t)]
            print(
                f"{side:9} {t:4}  {median(x.ttft_ms for x in xs):11.0f}  "
                f"{median(x.input_tokens for x in xs):12.0f}  "
                f"{median(x.cached_tokens for x in xs):13.0f}"
            )
    for t in range(1, args.turns + 1):
        a = median(x.ttft_ms for x in by[("affinity", t)])
        b = median(x.ttft_ms for x in by[("baseline", t)])
        print(f"RESULT turn {t} ttft affinity/baseline = {a / b:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chains", type=int, default=3)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads per worker")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--instruction-chars", type=int, default=2000)
    parser.add_argument("--n-ctx", type=int, default=4096)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mg-bench-responses-") as name:
        tmp = Path(name)
        workers = start_workers(args.workers, args.threads, args.n_ctx, tmp)
        gateways: list[Gateway] = []
        try:
            gateways = [start_gateway(s, [w.port for w in workers], tmp) for s in SIDES]
            turns: list[Turn] = []
            for chain in range(args.chains):
                for gw in gateways:
                    turns += run_chain(gw, chain * len(SIDES) + SIDES.index(gw.side), args)
            report(turns, args)
        finally:
            for gw in gateways:
                gw.proc.terminate()
                gw.proc.wait(30)
            stop_workers(workers)


if __name__ == "__main__":
    main()
