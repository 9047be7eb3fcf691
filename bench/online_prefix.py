"""What a batch line costs the next online request on the embedded llama.cpp engine, in
process (no gateway, no HTTP): time to first token of a short online chat request (greedy, 8
tokens) in three cases, and how many of its prompt tokens came from the KV cache:

- alone: right after the previous online request (the usual prefix reuse);
- after an aborted batch line: a preemptible request cancelled mid-generation just before;
- after another finished online prompt: a different conversation in between (no batch).

It isolates the engine from the gateway's and the engine process's event loops (where CPU
contention would show) and from the batch runner. Run on a quiet machine::

    .venv/bin/python bench/online_prefix.py --threads 2 --rounds 12
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from modelgrid.config import Settings
from modelgrid.core.types import ChatMessage, InferenceRequest, SamplingParams
from modelgrid.engines.catalog import CATALOG
from modelgrid.engines.llamacpp import LlamaCppEngine

MODEL = "qwen2.5-coder-0.5b-instruct"


def _request(text: str, preemptible: bool, max_tokens: int) -> InferenceRequest:
    return InferenceRequest(
        "bench",
        MODEL,
        messages=[ChatMessage("user", text)],
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0),
        preemptible=preemptible,
    )


async def _online(engine: LlamaCppEngine, i: int) -> tuple[float, int, int]:
    prepared = engine.prepare(_request(f"Say hello to user {i}.", False, 8))
    started = time.perf_counter()
    first = None
    async for delta in engine.stream(prepared):
        if first is None and delta.text:
            first = time.perf_counter() - started
    assert first is not None, "no token"
    return first, prepared.cached_prompt_tokens, prepared.prompt_tokens


async def _main(args: argparse.Namespace) -> None:
    s = Settings()
    engine = LlamaCppEngine(
        MODEL,
        s.models_dir / CATALOG[MODEL].filename,
        n_ctx=s.engine.n_ctx,
        n_threads=args.threads,
        n_batch=s.engine.n_batch,
    )
    await engine.start()
    try:
        for i in range(3):  # warm-up
            await _online(engine, i)
        cases: dict[str, list[tuple[float, int, int]]] = {}
        cases["alone"] = [await _online(engine, i) for i in range(args.rounds)]
        aborted = []
        for i in range(args.rounds):
            line = engine.prepare(_request(f"Ticket {i}: late order.", True, 64))

            async def consume(p: object = line) -> None:
                async for _ in engine.stream(p):  # type: ignore[arg-type]
                    pass

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.15 + 0.01 * i)  # mid-generation
            task.cancel()
            aborted.append(await _online(engine, i))
            await asyncio.gather(task, return_exceptions=True)
        cases["after an aborted batch line"] = aborted
        other = []
        for i in range(args.rounds):
            p = engine.prepare(_request(f"Ticket {i}: late order.", False, 4))
            async for _ in engine.stream(p):
                pass
            other.append(await _online(engine, i))
        cases["after another finished prompt"] = other
    finally:
        await engine.aclose()
    print("| case | TTFT p50 ms | TTFT max ms | cached / prompt tokens (median) |")
    print("|---|---:|---:|---|")
    for name, xs in cases.items():
        ttft = [1000 * x[0] for x in xs]
        cached = statistics.median(x[1] for x in xs)
        prompt = statistics.median(x[2] for x in xs)
        print(
            f"| {name} | {statistics.median(ttft):.0f} | {max(ttft):.0f} |"
            f" {cached:.0f} / {prompt:.0f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    ap.add_argument("--rounds", type=int, default=12, help="online requests a case")
    asyncio.run(_main(ap.parse_args()))


if __name__ == "__main__":
    main()
