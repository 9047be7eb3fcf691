"""Batch jobs: throughput and memory on the scripted engine, and what a running batch costs
online traffic on the real model.

``--part scripted``: a gateway over the scripted engine (``tests.fake_gateway``, every model
answered at once) runs a batch of ``--lines`` chat lines twice in the same run: with short
lines, and with lines padded to ``--big-line-bytes`` (a file ~100 times larger). It prints lines/s
for each and the gateway's peak RSS (``VmHWM``) before and after each batch — the runner
streams the input and pages the results, so memory must not grow with the file.

``--part model``: ``modelgrid serve`` on the packaged Qwen model. A steady trickle of streamed
chat requests (one every ``--gap-s``) measures TTFT p50/p95 without a batch, then again while
a batch of ``--batch-lines`` lines runs (same run, same server), and how many batch lines
finished meanwhile: the batch should use the idle time between online requests and cost
online TTFT at most +10 % at p50.

Run: ``.venv/bin/python bench/batch.py --part scripted|model|both``; results go to
``bench/RESULTS.md`` by hand, with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from served import Server

REPO = Path(__file__).resolve().parents[1]
MODEL = "qwen2.5-coder-0.5b-instruct"


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM``), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def batch_file(path: Path, n: int, model: str, pad: int, max_tokens: int) -> int:
    filler = "x" * pad
    with path.open("wb") as f:
        for i in range(n):
            body = {
                "model": model,
                "messages": [{"role": "user", "content": f"Ticket {i}: late order. {filler}"}],
                "max_tokens": max_tokens,
            }
            line = {"custom_id": f"t{i}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**line, "body": body}).encode() + b"\n")
    return path.stat().st_size


def run_batch(c: openai.OpenAI, path: Path, timeout_s: float = 3600) -> tuple[Any, float]:
    with path.open("rb") as f:
        uploaded = c.files.create(file=f, purpose="batch")
    started = time.monotonic()
    b = c.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while b.status not in ("completed", "failed", "expired", "cancelled"):
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"batch not done after {timeout_s} s: {b}")
        time.sleep(0.2)
        b = c.batches.retrieve(b.id)
    return b, time.monotonic() - started


def scripted(args: argparse.Namespace, tmp: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    env = {
        "MODELGRID_DATABASE__URL": db,
        "MODELGRID_DATA_DIR": str(tmp),
        "MODELGRID_ENGINE__MODELS": '["fake-model"]',
        "MODELGRID_ENGINE__ISOLATION": "in_process",
        "MODELGRID_BATCH__CONCURRENCY": str(args.concurrency),
        "MODELGRID_BOOTSTRAP_KEYS": "false",
        "MODELGRID_SERVER__LOG_LEVEL": "warning",
    }
    key = subprocess.run(
        [sys.executable, "-m", "modelgrid", "keys", "create", "--name", "bench"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout.strip()
    server = Server(tmp, env, command=("-m", "tests.fake_gateway"), cwd=REPO)
    server.wait_ready(60, key_line=False)
    try:
        c = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)
        rows = []
        for label, pad in (("short lines", 0), ("padded lines", args.big_line_bytes)):
            path = tmp / f"{label.replace(' ', '_')}.jsonl"
            size = batch_file(path, args.lines, "fake-model", pad, 8)
            before = rss_mb(server.proc.pid)
            b, took = run_batch(c, path)
            rows.append(
                (
                    label,
                    size / 1e6,
                    b.request_counts.completed,
                    took,
                    before,
                    peak_rss_mb(server.proc.pid),
                )
            )
            path.unlink()
        print(
            f"\n## Batch on the scripted engine ({args.lines} lines, concurrency "
            f"{args.concurrency})\n"
        )
        print("| input | file MB | lines done | s | lines/s | RSS before MB | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        for label, mb, done, took, before, peak in rows:
            print(
                f"| {label} | {mb:.1f} | {done} | {took:.1f} | {done / took:.0f} | "
                f"{before:.0f} | {peak:.0f} |"
            )
        growth = rows[1][5] - rows[0][5]
        print(
            f"\npeak RSS growth from a {rows[0][1]:.1f} MB to a {rows[1][1]:.1f} MB file: "
            f"{growth:+.0f} MB"
        )
    finally:
        server.stop()


def ttft_s(http: httpx.Client, key: str, i: int) -> float:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Say hello to user {i}."}],
        "max_tokens": 8,
        "stream": True,
    }
    started = time.perf_counter()
    first = None
    with http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as r:
        for line in r.iter_lines():
            token = '"content":"' in line and '"content":""' not in line
            if first is None and line.startswith("data: ") and token:
                first = time.perf_counter() - started
    assert first is not None, "no token"
    return first


def trickle(server: Server, key: str, n: int, gap_s: float) -> list[float]:
    out = []
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        for i in range(n):
            t0 = time.monotonic()
            out.append(ttft_s(http, key, i))
            time.sleep(max(0.0, gap_s - (time.monotonic() - t0)))
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))]


def model(args: argparse.Namespace, tmp: Path) -> None:
    server = Server(tmp, {"MODELGRID_DATA_DIR": str(tmp)})
    key = server.wait_ready(600)
    try:
        c = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)
        trickle(server, key, 3, args.gap_s)  # warm-up
        alone = trickle(server, key, args.online, args.gap_s)
        path = tmp / "model_batch.jsonl"
        batch_file(path, args.batch_lines, MODEL, 0, 16)
        with path.open("rb") as f:
            uploaded = c.files.create(file=f, purpose="batch")
        b = c.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        time.sleep(1.0)
        with_batch = trickle(server, key, args.online, args.gap_s)
        b = c.batches.retrieve(b.id)
        done_during = b.request_counts.completed
        c.batches.cancel(b.id)
        c.close()
        print(
            f"\n## Online TTFT with and without a batch (real model, one request every "
            f"{args.gap_s} s, {args.online} requests each)\n"
        )
        print("| online traffic | TTFT p50 ms | TTFT p95 ms |")
        print("|---|---|---|")
        for label, xs in (("alone", alone), ("with a batch running", with_batch)):
            print(f"| {label} | {1000 * statistics.median(xs):.0f} | {1000 * pct(xs, 0.95):.0f} |")
        ratio = statistics.median(with_batch) / statistics.median(alone)
        print(
            f"\np50 ratio with/without: {ratio:.3f} (goal ≤ 1.10); batch lines finished "
            f"meanwhile: {done_during} of {args.batch_lines}"
        )
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--part", choices=["scripted", "model", "both"], default="both")
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--big-line-bytes", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--online", type=int, default=20, help="online requests per phase")
    ap.add_argument("--gap-s", type=float, default=1.5, help="between online requests")
    ap.add_argument("--batch-lines", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mg-bench-batch-") as d:
        if args.part in ("scripted", "both"):
            (Path(d) / "s").mkdir()
            scripted(args, Path(d) / "s")
        if args.part in ("model", "both"):
            (Path(d) / "m").mkdir()
            model(args, Path(d) / "m")


if __name__ == "__main__":
    main()
