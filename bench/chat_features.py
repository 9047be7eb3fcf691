"""Decode speed of the llama.cpp engine with logprobs and grammars, vs plain decoding.

Goal: plain decoding through ``LlamaCppEngine`` (output assembly, tool-call parsing off) is as
fast as llama-cpp-python's own loop; ``logprobs`` and grammars cost only the requests that ask.

Variants, each a greedy generation of ``--max-tokens`` tokens from the same prompt, one at a
time in one process (the engine's worker thread), interleaved round-robin per round so noise
hits all of them: ``direct`` (``Llama.generate`` + detokenize, the baseline), ``plain``
(the engine), ``logprobs`` (``logprobs=True``), ``top20`` (``top_logprobs=20``),
``json_object`` (grammar-constrained). Decode tok/s = (tokens - 1) / (last - first token);
figures are medians over rounds, ratios are to ``direct`` of the same run.

Run from the repository root (embedded model downloaded, machine otherwise idle)::

    .venv/bin/python bench/chat_features.py --rounds 5 --max-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from modelgrid.config import Settings
from modelgrid.core.types import (
    ChatMessage,
    InferenceRequest,
    ResponseFormat,
    ResponseFormatKind,
    SamplingParams,
)
from modelgrid.engines.catalog import CATALOG
from modelgrid.engines.llamacpp import LlamaCppEngine

MODEL = "qwen2.5-coder-0.5b-instruct"
PROMPT = "Describe a cat as a JSON object with a name, an age and three favourite toys."


def request(max_tokens: int, **sampling: object) -> InferenceRequest:
    return InferenceRequest(
        "bench",
        MODEL,
        messages=[ChatMessage("user", PROMPT)],
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0, **sampling),  # type: ignore[arg-type]
    )


async def engine_run(engine: LlamaCppEngine, req: InferenceRequest) -> list[float]:
    stamps: list[float] = []
    async for delta in engine.stream(engine.prepare(req)):
        if delta.completion_tokens > len(stamps):
            stamps.append(time.perf_counter())
    return stamps


def direct_run(engine: LlamaCppEngine, req: InferenceRequest) -> list[float]:
    import llama_cpp

    llm = engine._llm
    assert llm is not None
    ids = llm.tokenize(engine.render_prompt(req).encode(), add_bos=True, special=True)
    stamps: list[float] = []
    for token in llm.generate(ids, top_k=0, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        llm.detokenize([token])
        stamps.append(time.perf_counter())
        if len(stamps) >= (req.sampling.max_tokens or 0):
            break
    return stamps


def tok_s(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    path = Settings().models_dir / CATALOG[MODEL].filename
    engine = LlamaCppEngine(MODEL, path, n_threads=args.threads)
    await engine.start()
    n = args.max_tokens
    json_fmt = ResponseFormat(ResponseFormatKind.JSON_OBJECT)
    variants: dict[str, Callable[[], object]] = {
        "direct": lambda: asyncio.to_thread(direct_run, engine, request(n)),
        "plain": lambda: engine_run(engine, request(n)),
        "logprobs": lambda: engine_run(engine, request(n, logprobs=True)),
        "top20": lambda: engine_run(engine, request(n, logprobs=True, top_logprobs=20)),
        "json_object": lambda: engine_run(engine, request(n, response_format=json_fmt)),
    }
    results: dict[str, list[float]] = {k: [] for k in variants}
    tokens: dict[str, int] = {}
    for r in range(args.rounds + 1):  # round 0 warms up
        order = list(variants) if r % 2 else list(reversed(variants))
        for name in order:
            stamps = await variants[name]()  # type: ignore[misc]
            if r:
                results[name].append(tok_s(stamps))  # type: ignore[arg-type]
                tokens[name] = len(stamps)  # type: ignore[arg-type]
    base = statistics.median(results["direct"])
    print(f"{'variant':<12} {'tokens':>6} {'tok/s':>8} {'vs direct':>9}")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"{name:<12} {tokens[name]:>6} {med:>8.1f} {med / base:>9.2f}")
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
