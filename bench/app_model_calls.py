"""What an app's model-based query rewrite and memory extraction cost on this CPU, vs the
answer they come with.

Per case, three greedy generations on the embedded model through ``LlamaCppEngine``, with
the gateway's own prompts: ``answer`` (the baseline: the app's prompt — instructions, the
earlier turn, a retrieved passage and the follow-up question — up to ``--answer-tokens``),
``rewrite`` (``serving.query_rewrite.rewrite_messages``, at most ``REWRITE_MAX_TOKENS``) and
``extract`` (``serving.memory_extraction.extraction_messages`` with its JSON schema, at most
``EXTRACT_MAX_TOKENS``). Round-robin per round, order reversed every other round, round 0
warms up; figures are medians over rounds of each case's wall time, prompt and completion
tokens, and the ratio of each median to ``answer``'s. Then what came out: each case's
rewritten query (``clean_query``; ``None`` = the concat fallback) and the facts kept
(``keep_facts``) of those the model proposed.

Run from the repository root (embedded model downloaded)::

    .venv/bin/python bench/app_model_calls.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

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
from modelgrid.serving.app_store import Turn
from modelgrid.serving.memory_extraction import (
    EXTRACT_MAX_TOKENS,
    FACTS_SCHEMA,
    extraction_messages,
    keep_facts,
    parse_facts,
)
from modelgrid.serving.query_rewrite import REWRITE_MAX_TOKENS, clean_query, rewrite_messages

MODEL = "qwen2.5-coder-0.5b-instruct"
INSTRUCTIONS = "You are the shop's helpdesk. Answer in one or two sentences."
# (earlier question, earlier answer, follow-up, passage for the answer)
CASES = [
    (
        "How long is the warranty on the X200 vacuum?",
        "The X200 has a two-year warranty.",
        "And for the battery?",
        "The X200's battery is covered for one year; the motor and body for two years.",
    ),
    (
        "My name is Ana and I live in Lyon. Do you deliver to France?",
        "Yes, we deliver to France within five working days.",
        "How much does it cost?",
        "Delivery to France costs 9 euros, free above 80 euros.",
    ),
    (
        "I'm a nurse and I work night shifts. Which coffee machine is quietest?",
        "The Barista Mini is our quietest machine at 42 dB.",
        "Can I return it if I don't like it?",
        "Unopened products can be returned within fourteen days for a full refund.",
    ),
    (
        "We have two cats. Is the X200 good with pet hair?",
        "Yes, the X200 has a pet-hair brush.",
        "What about the cheaper model?",
        "The X100 has no pet-hair brush; it suits hard floors.",
    ),
]


def request(
    messages: list[ChatMessage], max_tokens: int, fmt: ResponseFormat | None = None
) -> InferenceRequest:
    return InferenceRequest(
        "bench",
        MODEL,
        messages=messages,
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0, response_format=fmt),
        stream=False,
    )


def answer_messages(case: tuple[str, str, str, str]) -> list[ChatMessage]:
    q1, a1, q2, passage = case
    return [
        ChatMessage("system", INSTRUCTIONS),
        ChatMessage("user", q1),
        ChatMessage("assistant", a1),
        ChatMessage("user", f"Use this information:\n\n{passage}\n\nQuestion: {q2}"),
    ]


async def run(engine: LlamaCppEngine, req: InferenceRequest) -> tuple[float, int, int, str]:
    """(wall ms, prompt tokens, completion tokens, text)."""
    started = time.perf_counter()
    prepared = engine.prepare(req)
    text, produced = "", 0
    async for delta in engine.stream(prepared):
        text += delta.text
        produced = delta.completion_tokens or produced
    return (time.perf_counter() - started) * 1000.0, prepared.prompt_tokens, produced, text


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--answer-tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    path = Settings().models_dir / CATALOG[MODEL].filename
    engine = LlamaCppEngine(MODEL, path, n_threads=args.threads)
    await engine.start()
    facts_fmt = ResponseFormat(ResponseFormatKind.JSON_SCHEMA, FACTS_SCHEMA, "facts")
    variants = {
        "answer": lambda c: request(answer_messages(c), args.answer_tokens),
        "rewrite": lambda c: request(
            rewrite_messages([Turn(c[0], c[1])], c[2]), REWRITE_MAX_TOKENS
        ),
        "extract": lambda c: request(extraction_messages(c[0]), EXTRACT_MAX_TOKENS, facts_fmt),
    }
    ms: dict[str, list[float]] = {k: [] for k in variants}
    prompt: dict[str, list[int]] = {k: [] for k in variants}
    completion: dict[str, list[int]] = {k: [] for k in variants}
    texts: dict[tuple[str, int], str] = {}
    for r in range(args.rounds + 1):  # round 0 warms up
        order = list(variants) if r % 2 else list(reversed(variants))
        for i, case in enumerate(CASES):
            for name in order:
                wall, p, c, text = await run(engine, variants[name](case))  # type: ignore[no-untyped-call]
                texts[(name, i)] = text
                if r:
                    ms[name].append(wall)
                    prompt[name].append(p)
                    completion[name].append(c)
    base = statistics.median(ms["answer"])
    print(
        f"{'call':<8} {'median ms':>9} {'p max ms':>9} {'prompt tok':>10} {'out tok':>8} {'vs answer':>9}"
    )
    for name in variants:
        med = statistics.median(ms[name])
        print(
            f"{name:<8} {med:>9.0f} {max(ms[name]):>9.0f} {statistics.median(prompt[name]):>10.0f}"
            f" {statistics.median(completion[name]):>8.0f} {med / base:>9.2f}"
        )
    print()
    for i, case in enumerate(CASES):
        proposed = parse_facts(texts[("extract", i)])
        kept = keep_facts(proposed or [], case[0])
        print(f"case {i}: follow-up {case[2]!r}")
        print(
            f"  rewrite  -> {clean_query(texts[('rewrite', i)])!r}  (raw {texts[('rewrite', i)]!r})"
        )
        print(f"  proposed -> {proposed!r}")
        print(f"  kept     -> {kept!r}")
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
