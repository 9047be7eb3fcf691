"""Engine overhead: modelgrid's HTTP API vs llama-cpp-python called directly, side by side.

Goals (concurrency 1, >= 20 requests): decode tokens/s through HTTP >= 0.97 of direct; TTFT
added <= 10 ms (median of the paired differences); then 8 parallel streams all answer exactly
what the direct side answered alone (greedy).

HTTP: a real ``python -m modelgrid serve`` subprocess — the gateway, and the model in its own
supervised engine process (``--isolation process``, the default; ``in_process`` for the old
layout) — (throwaway SQLite database,
``MODELGRID_ENGINE__N_THREADS``; the first-start API key is parsed from its stdout), streamed
with raw httpx on one keep-alive connection: ``stream=true``, ``temperature=0``,
``max_tokens=N``, ``stream_options.include_usage``. TTFT = request sent -> first SSE chunk with
content; decode tok/s = (completion_tokens - 1) / (last - first content chunk).

Direct: ``llama_cpp.Llama`` in this process with the engine's settings (n_ctx 4096, same
threads, n_batch 512); the model's chat template through the same ``Jinja2ChatFormatter``,
tokenized with add_bos/special, ``Llama.generate`` greedy (top_k 0, top_p 1, min_p 0, temp 0)
to an EOG token or N tokens, each token detokenized as the engine does. TTFT = call
(templating included) -> first token; decode tok/s = (tokens - 1) / (last - first token).

Fairness: one generation at a time (the server idles while the direct model runs, and the bench
waits ``--pause`` s after every request, longer than the server's 0.5 s usage flush). Sides are
interleaved per (round, prompt) in ABBA order (direct, http, http, direct, ...) so noise hits
both; generated texts are compared (column ``same``). Prompt cache: both warm, the same way.
Each prompt runs once per side first (warm-up, unmeasured); afterwards each side's previous
request is the previous prompt of the list, so llama.cpp reuses only the shared chat-template
prefix (system prompt) on both sides: no exact-prompt hits with >= 2 prompts.
Per-prompt figures are medians over rounds; the RESULT line gives the medians of the paired
(same round and prompt, back to back) http/direct ratios and TTFT differences.

Run from the repository root (embedded model downloaded; keep the machine otherwise idle)::

    .venv/bin/python bench/engine_overhead.py          # 5 rounds x 4 prompts, 64 tokens
    .venv/bin/python bench/engine_overhead.py --rounds 5 --max-tokens 128 --threads 2
    .venv/bin/python bench/engine_overhead.py --isolation in_process   # the gateway-only layout
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median as med

import httpx
import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from prompts import PROMPTS
from served import Server

MODEL_ID = "qwen2.5-coder-0.5b-instruct"
MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


@dataclass
class Sample:
    ttft_ms: float
    tok_s: float
    tokens: int
    text: str


def _decode_rate(tokens: int, t_first: float | None, t_last: float | None) -> float:
    if tokens < 2 or t_first is None or t_last is None or t_last <= t_first:
        return float("nan")
    return (tokens - 1) / (t_last - t_first)


class Direct:
    def __init__(self, model_path: Path, threads: int) -> None:
        self.llm = llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=4096,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=512,
            verbose=False,
        )
        llm = self.llm
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace")
        template = llm.metadata["tokenizer.chat_template"]
        self.fmt = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token="")

    def run(self, messages: list[dict[str, str]], max_tokens: int) -> Sample:
        llm, vocab = self.llm, self.llm._model.vocab
        t0 = time.perf_counter()
        prompt = self.fmt(messages=messages).prompt
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        pieces: list[bytes] = []
        t_first = t_last = None
        gen = llm.generate(ids, top_k=0, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0)
        try:
            for tok in gen:
                if llama_cpp.llama_vocab_is_eog(vocab, tok):
                    break
                t_last = time.perf_counter()
                if t_first is None:
                    t_first = t_last
                pieces.append(llm.detokenize([tok]))
                if len(pieces) >= max_tokens:
                    break
        finally:
            gen.close()
        ttft = (t_first - t0) * 1000 if t_first is not None else float("nan")
        text = b"".join(pieces).decode("utf-8", "replace")
        return Sample(ttft, _decode_rate(len(pieces), t_first, t_last), len(pieces), text)


def http_run(client: httpx.Client, messages: list[dict[str, str]], max_tokens: int) -> Sample:
    body = {
        "model": MODEL_ID,
        "messages": messages,
        "stream": True,
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
    }
    pieces: list[str] = []
    t_first = t_last = None
    tokens = 0
    t0 = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            obj = json.loads(data)
            if "error" in obj:
                raise RuntimeError(f"error event: {obj['error']}")
            for choice in obj["choices"]:
                content = choice["delta"].get("content")
                if content:
                    t_last = time.perf_counter()
                    if t_first is None:
                        t_first = t_last
                    pieces.append(content)
            if obj.get("usage"):
                tokens = obj["usage"]["completion_tokens"]
    ttft = (t_first - t0) * 1000 if t_first is not None else float("nan")
    return Sample(ttft, _decode_rate(tokens, t_first, t_last), tokens, "".join(pieces))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--parallel", type=int, default=8, help="parallel streams in the last check")
    p.add_argument("--isolation", choices=("process", "in_process"), default="process")
    p.add_argument("--prompts", type=int, default=4, help="1..4")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, both sides")
    p.add_argument("--pause", type=float, default=0.75, help="idle seconds after each request")
    p.add_argument("--model-path", type=Path, default=None)
    a = p.parse_args()
    if a.model_path is None:
        from modelgrid.config import Settings

        a.model_path = Settings().models_dir / MODEL_FILE
    prompts = PROMPTS[: max(1, min(a.prompts, 4))]
    convs = [[{"role": "user", "content": text}] for text in prompts]

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mg-bench-") as tmpdir:
        server = Server(
            Path(tmpdir),
            {
                "MODELGRID_ENGINE__N_THREADS": str(a.threads),
                "MODELGRID_ENGINE__ISOLATION": a.isolation,
            },
        )
        try:
            key = server.wait_ready()
            direct = Direct(a.model_path, a.threads)
            headers = {"authorization": f"Bearer {key}"}
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=300) as client:
                sides = {
                    "direct": lambda m: direct.run(m, a.max_tokens),
                    "http": lambda m: http_run(client, m, a.max_tokens),
                }
                for conv in convs:  # warm-up, not measured
                    for side in ("direct", "http"):
                        sides[side](conv)
                        time.sleep(a.pause)
                floor = []  # fixed per-request cost without the engine: auth, routing, JSON
                for _ in range(50):
                    t = time.perf_counter()
                    client.get("/v1/models").raise_for_status()
                    floor.append((time.perf_counter() - t) * 1000)
                results: dict[tuple[int, int, str], Sample] = {}
                k = 0
                for rnd in range(a.rounds):
                    for i, conv in enumerate(convs):
                        order = ("direct", "http") if k % 2 == 0 else ("http", "direct")
                        k += 1
                        for side in order:
                            results[rnd, i, side] = sides[side](conv)
                            time.sleep(a.pause)
                every = [[{"role": "user", "content": text}] for text in PROMPTS]
                alone = [direct.run(conv, a.max_tokens).text for conv in every]
                parallel = run_parallel(server.base_url, headers, every, a.parallel, a.max_tokens)
        finally:
            server.stop()

    print(
        f"# {datetime.datetime.now().isoformat(timespec='seconds')}  {platform.node()}  "
        f"cpus={os.cpu_count()}  threads={a.threads}  max_tokens={a.max_tokens}  "
        f"rounds={a.rounds}  llama_cpp={llama_cpp.__version__}  isolation={a.isolation}  "
        f"load1 {load0:.2f}->{os.getloadavg()[0]:.2f}"
    )
    print(f"# HTTP floor: GET /v1/models (auth + routing + JSON) median {med(floor):.2f} ms")
    print(
        f"{'prompt':>6} {'toks':>5} {'direct tok/s':>12} {'http tok/s':>10} {'ratio':>6} "
        f"{'direct TTFT':>11} {'http TTFT':>9} {'overhead':>8} {'same':>5}"
    )
    rows = {
        str(i): [(results[r, i, "direct"], results[r, i, "http"]) for r in range(a.rounds)]
        for i in range(len(convs))
    }
    rows["all"] = [pair for pairs in rows.values() for pair in pairs]
    for label, pairs in rows.items():
        ratio = med(h.tok_s / d.tok_s for d, h in pairs)
        over = med(h.ttft_ms - d.ttft_ms for d, h in pairs)
        same = all(d.text == h.text and d.tokens == h.tokens for d, h in pairs)
        print(
            f"{label:>6} {med(d.tokens for d, _ in pairs):>5} "
            f"{med(d.tok_s for d, _ in pairs):>12.2f} {med(h.tok_s for _, h in pairs):>10.2f} "
            f"{ratio:>6.3f} {med(d.ttft_ms for d, _ in pairs):>9.1f}ms "
            f"{med(h.ttft_ms for _, h in pairs):>7.1f}ms {over:>+6.1f}ms "
            f"{'yes' if same else 'NO':>5}"
        )
    ds, hs = [d for d, _ in rows["all"]], [h for _, h in rows["all"]]
    bd, bh = max(d.tok_s for d in ds), max(h.tok_s for h in hs)
    td, th = min(d.ttft_ms for d in ds), min(h.ttft_ms for h in hs)
    print(  # the least disturbed sample of each side: robust to bursts of foreign load
        f"{'best':>6} {'':>5} {bd:>12.2f} {bh:>10.2f} {bh / bd:>6.3f} {td:>9.1f}ms "
        f"{th:>7.1f}ms {th - td:>+6.1f}ms"
    )
    right = sum(text == alone[i % len(alone)] for i, text in enumerate(parallel))
    print(
        f"RESULT decode http/direct = {ratio:.3f} (goal >= 0.97: "
        f"{'met' if ratio >= 0.97 else 'MISSED'}); TTFT added = {over:+.1f} ms "
        f"(goal <= 10 ms: {'met' if over <= 10 else 'MISSED'}) over {len(ds)} requests; "
        f"{right}/{len(parallel)} parallel streams answered as the direct side alone"
    )


def run_parallel(
    base_url: str,
    headers: dict[str, str],
    convs: list[list[dict[str, str]]],
    count: int,
    max_tokens: int,
) -> list[str]:
    """``count`` streams at once (conversation ``i % len(convs)``), each on its own
    connection; their texts (an error event or a failed request: ``"<error>"``)."""
    texts = ["<error>"] * count

    def one(i: int) -> None:
        with (
            httpx.Client(base_url=base_url, headers=headers, timeout=600) as client,
            contextlib.suppress(httpx.HTTPError, RuntimeError),
        ):
            texts[i] = http_run(client, convs[i % len(convs)], max_tokens).text

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return texts


if __name__ == "__main__":
    main()
