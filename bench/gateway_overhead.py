"""Gateway overhead: modelgrid in front of the harness's fake upstream, versus calling the
upstream directly (same run) and versus LiteLLM's proxy (same run, or its reference results).

It drives the shared harness (``../shared/bench-harness`` beside the checkout, see its
README): builds it in a
temporary copy, starts the fake upstream on CPU 0, creates a real tenant key, starts
``modelgrid serve`` pinned to CPU 1 (one uvicorn worker, uvloop + httptools, log level
warning, key checks and metering on: every request is authenticated and lands in the usage
ledger), and runs ``scripts/compare.sh`` (direct and modelgrid in alternating passes, the load
generator on CPU 0). With ``--litellm run`` it then starts LiteLLM's proxy (its own venv,
``gateways/litellm/install.sh``) the same way and measures it into the same file; with
``--litellm reference`` it reads the harness's LiteLLM reference report instead.

It prints, per mode and concurrency, modelgrid's RPS, latency (and TTFT for streams), the
latency added over direct, CPU ms per request, and the ratios to direct and to LiteLLM; then
max RPS, RSS, the check that the usage ledger holds one row per completed request, and the
issue's goals.

Run: ``.venv/bin/python bench/gateway_overhead.py [--reps 1] [--duration-s 15]
[--litellm run|reference|skip] [--harness DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_HARNESS = REPO.parent / "shared" / "bench-harness"
GOALS = {"nonstream_rps": 950, "stream_rps": 350, "added_p50_c1_ms": 1.0, "rss_mb": 150}


def sh(cmd: list[str], env: dict[str, str] | None = None, **kw: Any) -> str:
    out = subprocess.run(
        cmd, env={**os.environ, **(env or {})}, check=True, text=True, capture_output=True, **kw
    )
    return out.stdout


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout_s} s")


def harness(path: str | None) -> Path:
    """A writable, built copy of the harness."""
    if path:
        h = Path(path)
    else:
        h = Path(tempfile.mkdtemp(prefix="mg-bench-")) / "h"
        shutil.copytree(SHARED_HARNESS, h, ignore=shutil.ignore_patterns("run", "target"))
    if not (h / "target/release/llmload").exists():
        print("building the harness …", file=sys.stderr)
        sh([str(h / "scripts/build.sh")])
    return h


class Gateway:
    """``modelgrid serve`` with one upstream model, pinned with taskset."""

    def __init__(self, data_dir: Path, port: int, upstream_port: int, cpus: str) -> None:
        self.port = port
        self.cpus = cpus
        self.env = {
            "MODELGRID_DATA_DIR": str(data_dir),
            "MODELGRID_ENGINE__MODELS": "[]",
            "MODELGRID_ENGINE__EMBEDDING_MODELS": "[]",
            "MODELGRID_BOOTSTRAP_KEYS": "false",
            "MODELGRID_SERVER__LOG_LEVEL": "warning",
            "MODELGRID_UPSTREAMS__0__MODEL": "fake-gpt",
            "MODELGRID_UPSTREAMS__0__BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
            "MODELGRID_UPSTREAMS__0__UPSTREAM_MODEL": "fake-model",
            "MODELGRID_UPSTREAMS__0__API_KEY": "sk-fake-upstream",
        }
        self.db = data_dir / "modelgrid.db"

    def create_key(self) -> str:
        out = sh(
            [sys.executable, "-m", "modelgrid", "keys", "create", "--name", "bench", "--json"],
            env=self.env,
            cwd=REPO,
        )
        return str(json.loads(out)["key"])

    def start(self, log: Path) -> int:
        self.log = log.open("wb")
        cmd = ["taskset", "-c", self.cpus, sys.executable, "-m", "modelgrid", "serve"]
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port)],
            env={**os.environ, **self.env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        wait_http(f"http://127.0.0.1:{self.port}/health/ready", 60)
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()

    def usage_rows(self) -> int:
        con = sqlite3.connect(self.db)
        try:
            return int(con.execute("SELECT count(*) FROM usage_records").fetchone()[0])
        finally:
            con.close()


def run_litellm(h: Path, out: Path, args: argparse.Namespace) -> None:
    venv = h / "run/litellm-venv"
    if not (venv / "bin/litellm").exists():
        print("installing LiteLLM (gateways/litellm/install.sh) …", file=sys.stderr)
        sh([str(h / "gateways/litellm/install.sh")])
    env = {
        "GATEWAY_CPUS": args.gateway_cpus,
        "UPSTREAM_BASE": f"http://127.0.0.1:{args.upstream_port}/v1",
        "LITELLM_PORT": str(args.litellm_port),
    }
    sh([str(h / "gateways/litellm/start.sh")], env=env)
    pid = (h / "run/litellm.pid").read_text().strip()
    try:
        subprocess.run(
            [str(h / "scripts/run_matrix.sh")],
            env={
                **os.environ,
                **matrix_env(args, out),
                "TARGET_NAME": "litellm-w1",
                "TARGET_URL": f"http://127.0.0.1:{args.litellm_port}/v1",
                "TARGET_KEY": "sk-bench-master-key",
                "TARGET_MODEL": "fake-gpt",
                "TARGET_PID": pid,
                "TARGET_CPUS": args.gateway_cpus,
                "TARGET_HEADER": "x-litellm-overhead-duration-ms",
                "REPEATS": str(args.reps),
                "UPSTREAM_STATS": f"http://127.0.0.1:{args.upstream_port}/stats",
            },
            check=True,
        )
    finally:
        sh([str(h / "scripts/stop_pid.sh"), str(h / "run/litellm.pid")])


def matrix_env(args: argparse.Namespace, out: Path) -> dict[str, str]:
    return {
        "OUT": str(out),
        "DURATION_S": str(args.duration_s),
        "WARMUP_S": str(args.warmup_s),
        "CONCURRENCY": args.concurrency,
        "QUIET_WAIT_S": str(args.quiet_wait_s),
        "WRK": "1" if args.wrk else "0",
        "LOADGEN_CPUS": args.loadgen_cpus,
        "UPSTREAM_PORT": str(args.upstream_port),
    }


# --- results --------------------------------------------------------------------------------


def load_runs(path: Path) -> tuple[dict[tuple[str, str, int], list[dict[str, Any]]], list[dict]]:
    """The cleanest attempt of each (target, mode, concurrency, rep), grouped without rep."""
    best: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    mems = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind", "").startswith("mem_"):
            mems.append(row)
        if row.get("kind") != "run" or row.get("tool") == "wrk":
            continue
        key = (row["target_name"], row["mode"], int(row["concurrency"]), int(row["rep"]))
        other = (row.get("host") or {}).get("other_cpu_pct") or 0
        if key not in best or other < ((best[key].get("host") or {}).get("other_cpu_pct") or 0):
            best[key] = row
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for (target, mode, c, _), row in sorted(best.items()):
        grouped[(target, mode, c)].append(row)
    return grouped, mems


def mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def figures(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    def pick(*path: str) -> float | None:
        out = []
        for r in rows:
            v: Any = r
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            out.append(v)
        return mean(out)

    return {
        "rps": pick("rps"),
        "p50": pick("lat_ms", "p50"),
        "p99": pick("lat_ms", "p99"),
        "ttft50": pick("ttft_ms", "p50"),
        "ttft99": pick("ttft_ms", "p99"),
        "cpu": pick("target", "cpu_ms_per_req"),
        "rss": pick("target", "rss_mb_peak"),
        "other": pick("host", "other_cpu_pct"),
        "events": pick("content_events_per_resp"),
        "completed": sum(r.get("completed_total") or 0 for r in rows),
        "upstream": sum(r.get("upstream_requests") or 0 for r in rows),
    }


def litellm_reference() -> dict[tuple[str, int], dict[str, float]]:
    """litellm-w1 rows of the harness's reference report (first repetition's values)."""
    ref: dict[tuple[str, int], dict[str, float]] = {}
    reports = sorted((SHARED_HARNESS / "results").glob("litellm-baseline-*.md"))
    if not reports:
        return ref
    mode = None
    for line in reports[-1].read_text().splitlines():
        if line.startswith("### Non-streaming"):
            mode = "nonstream"
        elif line.startswith("### Streaming"):
            mode = "stream"
        elif line.startswith("### "):
            mode = None
        cells = [c.strip() for c in line.strip("|").split("|")]
        if mode and len(cells) > 5 and cells[0] == "litellm-w1":
            first = [float(re.split(r"\s*/\s*", c)[0]) if c[:1].isdigit() else 0.0 for c in cells]
            if mode == "nonstream":
                ref[(mode, int(cells[1]))] = {"rps": first[2], "p50": first[3], "p99": first[4]}
            else:
                ref[(mode, int(cells[1]))] = {
                    "rps": first[2],
                    "ttft50": first[3],
                    "p50": first[5],
                    "p99": first[6],
                }
    return ref


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "–"


def num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def report(path: Path, usage_rows: int | None, litellm: str, litellm_source: str) -> str:
    grouped, mems = load_runs(path)
    ref = litellm_reference() if litellm == "reference" else {}
    lines = [
        "| mode | conc | direct RPS | modelgrid RPS | mg/direct RPS | LiteLLM RPS | mg/LiteLLM RPS "
        "| direct p50 / p99 ms | modelgrid p50 / p99 ms | added p50 / p99 ms | LiteLLM added p50 ms "
        "| modelgrid TTFT p50 / p99 ms | modelgrid CPU ms/req | content events/resp (direct → mg) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---|---:|---|",
    ]
    best = {"nonstream": 0.0, "stream": 0.0}
    added_c1 = None
    completed = 0
    for (target, mode, c), rows in sorted(grouped.items()):
        if target != "modelgrid":
            continue
        mg = figures(rows)
        completed += int(mg["completed"] or 0)
        d = figures(grouped.get(("direct", mode, c), []))
        if ("litellm-w1", mode, c) in grouped:
            lt: dict[str, Any] = figures(grouped[("litellm-w1", mode, c)])
            lt_added = (lt["p50"] - d["p50"]) if lt["p50"] and d["p50"] is not None else None
        else:
            lt = ref.get((mode, c), {})
            lt_added = lt.get("p50")  # the reference's direct p50 is ~0.01 ms
        added50 = (mg["p50"] - d["p50"]) if mg["p50"] is not None and d["p50"] else None
        added99 = (mg["p99"] - d["p99"]) if mg["p99"] is not None and d["p99"] else None
        if mode == "nonstream" and c == 1:
            added_c1 = added50
        best[mode] = max(best[mode], mg["rps"] or 0)
        ttft = f"{num(mg['ttft50'])} / {num(mg['ttft99'])}" if mode == "stream" else "–"
        events = f"{num(d['events'], 1)} → {num(mg['events'], 1)}" if mode == "stream" else "–"
        lines.append(
            f"| {mode} | {c} | {num(d['rps'], 0)} | {num(mg['rps'], 0)} | {ratio(mg['rps'], d['rps'])} "
            f"| {num(lt.get('rps'), 1)} | {ratio(mg['rps'], lt.get('rps'))} "
            f"| {num(d['p50'])} / {num(d['p99'])} | {num(mg['p50'])} / {num(mg['p99'])} "
            f"| {num(added50)} / {num(added99)} | {num(lt_added)} | {ttft} | {num(mg['cpu'])} "
            f"| {events} |"
        )
    rss = [m.get("rss_mb") for m in mems if m.get("target_name") == "modelgrid"]
    peaks = [
        (r.get("target") or {}).get("rss_mb_peak")
        for (t, _, _), rows in grouped.items()
        if t == "modelgrid"
        for r in rows
    ]
    rss_peak = max([p for p in peaks if p] or [0])
    lines += [
        "",
        f"- max RPS on one core: non-streaming {best['nonstream']:.0f} (goal ≥ "
        f"{GOALS['nonstream_rps']}), streaming {best['stream']:.0f} (goal ≥ {GOALS['stream_rps']})",
        f"- added p50 at concurrency 1, non-streaming: {num(added_c1)} ms (goal ≤ "
        f"{GOALS['added_p50_c1_ms']} ms)",
        f"- RSS of the one worker: idle {num(mean([r for r in rss if r]), 1)} MB, peak "
        f"{rss_peak:.1f} MB (goal ≤ {GOALS['rss_mb']} MB)",
        f"- usage ledger: {usage_rows} rows for {completed} requests completed in the measured "
        "windows (the ledger also holds warm-up and cut-off requests, so rows ≥ completed)"
        if usage_rows is not None
        else "- usage ledger: see the main table",
        f"- LiteLLM figures: {litellm_source}",
        f"- foreign CPU during modelgrid's windows (other jobs on the machine, % of one CPU): "
        f"{num(mean([figures(r)['other'] for (t, _, _), r in grouped.items() if t == 'modelgrid']), 0)}",
        *wrk_lines(path),
    ]
    return "\n".join(lines)


def wrk_lines(path: Path) -> list[str]:
    """The wrk cross-check of the non-streaming points (``--wrk``), if it ran."""
    rows = [
        json.loads(line)
        for line in path.read_text().splitlines()
        if '"tool":"wrk"' in line.replace(" ", "")
    ]
    if not rows:
        return []
    out = [
        "",
        "wrk cross-check (non-streaming, same points, measured right after llmload):",
        "",
        "| target | conc | wrk RPS | wrk p50 / p99 ms | non-200 or socket errors |",
        "|---|---:|---:|---|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r.get("label", ""), int(r["concurrency"]))):
        lat, errors = r["lat_ms"], sum(r["errors"].values())
        out.append(
            f"| {r.get('label', '')} | {r['concurrency']} | {r['rps']:.0f} "
            f"| {lat['p50']:.2f} / {lat['p99']:.2f} | {errors} |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--harness", help="a built copy of the harness (default: copy and build)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--duration-s", type=int, default=15)
    ap.add_argument("--warmup-s", type=int, default=3)
    ap.add_argument("--concurrency", default="1 16 64")
    ap.add_argument("--quiet-wait-s", type=int, default=30)
    ap.add_argument("--litellm", choices=("run", "reference", "skip"), default="reference")
    ap.add_argument(
        "--paced-ms",
        type=int,
        default=0,
        help="also measure streams from an upstream pacing its chunks this many ms apart "
        "(each chunk then reaches the gateway alone and is forwarded as its own event)",
    )
    ap.add_argument(
        "--wrk",
        action="store_true",
        help="cross-check every non-streaming point with Debian's wrk (a second load "
        "generator, C and LuaJIT) after llmload",
    )
    ap.add_argument("--port", type=int, default=18300)
    ap.add_argument("--upstream-port", type=int, default=18080)
    ap.add_argument("--litellm-port", type=int, default=14000)
    ap.add_argument("--gateway-cpus", default="1")
    ap.add_argument("--loadgen-cpus", default="0")
    args = ap.parse_args()

    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    h = harness(args.harness)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = h / "results" / f"gateway_overhead-{stamp}.jsonl"
    out.parent.mkdir(exist_ok=True)
    up_env = {"UPSTREAM_PORT": str(args.upstream_port), "UPSTREAM_CPUS": args.loadgen_cpus}
    sh([str(h / "scripts/upstream.sh"), "start"], env=up_env)
    data_dir = Path(tempfile.mkdtemp(prefix="mg-gw-"))
    gw = Gateway(data_dir, args.port, args.upstream_port, args.gateway_cpus)
    try:
        key = gw.create_key()
        pid = gw.start(data_dir / "serve.log")

        def compare(path: Path, **extra: str) -> None:
            """The harness's direct-vs-modelgrid passes, appended to ``path``."""
            target = {
                "TARGET_NAME": "modelgrid",
                "TARGET_URL": f"http://127.0.0.1:{args.port}/v1",
                "TARGET_KEY": key,
                "TARGET_MODEL": "fake-gpt",
                "TARGET_PID": str(pid),
                "TARGET_CPUS": args.gateway_cpus,
                "REPS": str(args.reps),
            }
            env = {**os.environ, **matrix_env(args, path), **target, **extra}
            subprocess.run([str(h / "scripts/compare.sh")], env=env, check=True)

        compare(out)
        if args.paced_ms:
            paced = out.with_name(out.stem + f"-paced{args.paced_ms}ms.jsonl")
            sh([str(h / "scripts/upstream.sh"), "stop"], env=up_env)
            sh(
                [str(h / "scripts/upstream.sh"), "start"],
                env={**up_env, "UPSTREAM_CHUNK_DELAY_MS": str(args.paced_ms)},
            )
            compare(paced, MODES="stream")
            sh([str(h / "scripts/upstream.sh"), "stop"], env=up_env)
            sh([str(h / "scripts/upstream.sh"), "start"], env=up_env)
        time.sleep(2)  # the usage writer flushes every 0.5 s
        gw.stop()
        usage_rows = gw.usage_rows()
        if args.litellm == "run":
            run_litellm(h, out, args)
    finally:
        if getattr(gw, "proc", None) is not None and gw.proc.poll() is None:
            gw.stop()
        subprocess.run([str(h / "scripts/upstream.sh"), "stop"], env={**os.environ, **up_env})
    source = {
        "run": "measured in this run (litellm-w1: one worker on the gateway CPU)",
        "reference": "the harness's reference report (results/litellm-baseline-*.md, first "
        "repetition), not this run",
        "skip": "not compared",
    }[args.litellm]
    text = report(out, usage_rows, args.litellm, source)
    print(f"\nraw results: {out}\nload average after: {os.getloadavg()}\n")
    print(text)
    if args.paced_ms:
        print(f"\nStreams from an upstream pacing its 20 chunks {args.paced_ms} ms apart:\n")
        print(report(paced, None, "skip", "not compared"))


if __name__ == "__main__":
    main()
