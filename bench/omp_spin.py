"""llama.cpp's decode speed by GNU OpenMP's barrier spin (``GOMP_SPINCOUNT``), on a quiet
machine and beside one busy process: 1,000 (what README recommends on shared machines)
against libgomp's default (300,000 iterations) and others, side by side. modelgrid keeps
libgomp's default (a shorter spin costs 2-4 % on a quiet machine); README says when to set it.

llama.cpp's CPU threads meet at an OpenMP barrier after every operation of the graph; a
thread that arrives first spins ``GOMP_SPINCOUNT`` iterations before it sleeps. When another
process wants a core, the spinning thread holds a core the working one needs.

Each figure is a child process (its own interpreter, so libgomp reads the variable when it
loads): it loads the packaged model with ``--threads`` threads and runs ``--rounds`` greedy
generations of ``--max-tokens`` tokens; the figure is the median of ms per generated token
over the rounds after the first (prefill included, a 12-token prompt). *Busy* runs one
process spinning in pure Python (one core's worth) beside it, for the whole figure. The
values run in a rotating order per condition. RESULT lines give each value's ratio to
libgomp's default.

Run from the repository root (embedded model installed)::

    .venv/bin/python bench/omp_spin.py
    .venv/bin/python bench/omp_spin.py --values default,3000,1000,300,passive --rounds 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"

CHILD = """
import sys, time, statistics
from llama_cpp import Llama
path, threads, rounds, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=512, verbose=False)
per_token = []
for i in range(rounds):
    start = time.perf_counter()
    out = llm(f"Write a poem about the sea, number {i}.", max_tokens=max_tokens, seed=1,
              temperature=0)
    per_token.append((time.perf_counter() - start) * 1000 / out["usage"]["completion_tokens"])
print(statistics.median(per_token[1:] or per_token))
"""

BUSY = "while True: pass"


def model_path() -> Path:
    base = Path(os.environ.get("MODELGRID_DATA_DIR") or Path.home() / ".local/share/modelgrid")
    return base / "models" / MODEL_FILE


def child_env(value: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    if value == "passive":
        env["OMP_WAIT_POLICY"] = "passive"
    elif value != "default":
        env["GOMP_SPINCOUNT"] = value
    return env


def measure(value: str, args: argparse.Namespace) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(model_path()),
            str(args.threads),
            str(args.rounds),
            str(args.max_tokens),
        ],
        env=child_env(value),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--values",
        default="default,1000",
        help="GOMP_SPINCOUNT values; 'default' (unset), 'passive' (OMP_WAIT_POLICY)",
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2, help="figures per value and condition")
    args = ap.parse_args()
    values = args.values.split(",")
    if not model_path().exists():
        sys.exit(f"{model_path()} is missing: run scripts/serve.sh once (it installs the model)")
    print(f"threads {args.threads}, cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    for condition in ("quiet", "busy"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY]) if condition == "busy" else None
        try:
            time.sleep(0.5)
            figures: dict[str, list[float]] = {v: [] for v in values}
            for r in range(args.repeats):
                for v in values[r % len(values) :] + values[: r % len(values)]:
                    figures[v].append(measure(v, args))
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        base = min(figures["default"]) if "default" in figures else None
        for v in values:
            best = min(figures[v])
            ratio = f"  {best / base:.2f}x default" if base else ""
            shown = " ".join(f"{x:.0f}" for x in figures[v])
            print(
                f"RESULT {condition:5} GOMP_SPINCOUNT={v:8} {best:6.1f} ms/token "
                f"(figures {shown}){ratio}"
            )


if __name__ == "__main__":
    main()
