"""Measuring an engine: ``modelgrid plan profile`` runs the real engine over a grid of prompt
lengths and batch sizes and fits the profile the simulator uses (``planner.profile``).

The engine comes in through the ``Engine`` protocol (the CLI, a composition root, builds it
with ``engines.registry.build_engine``): the planner never loads llama.cpp itself. Each
request is a raw prompt (``/v1/completions`` style: no chat template) of the wanted length in
the model's own tokens, opening with words drawn at random so that no two prompts share a
prefix the engine could reuse from its cache, and ending in a counting list the model goes on
with, so it writes ``output_tokens`` tokens rather than stopping early. Greedy decoding,
unseeded as most traffic is: the llama.cpp engine evaluates a seeded request's last prompt
token alone (``_settle_prompt`` in ``engines/llamacpp.py``), one more decode step (~50 ms on
the 0.5B model, ~5 % of a 100-token prefill) that profiles measured seeded carried and
unseeded requests do not pay (validation run 5: idle TTFT through the gateway 2.5-5.5 %
under such a profile's prefill).

Per grid cell, ``repeats`` runs of ``batch`` concurrent requests: the first token's time
from submission (prefill, at batch 1 the service time itself), the mean gap between a
request's consecutive tokens (decode), and the batch's output tokens per second. One
unmeasured request warms the engine up first.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelgrid.core.types import InferenceRequest, SamplingParams
from modelgrid.engines.base import Engine
from modelgrid.planner.profile import EngineProfile, ProfilePoint, fit

WORDS = [
    "amber",
    "basil",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "garnet",
    "harbor",
    "indigo",
    "juniper",
    "kestrel",
    "lagoon",
    "meadow",
    "nectar",
    "orchid",
    "pebble",
    "quartz",
    "raven",
    "saffron",
    "tundra",
    "umber",
    "violet",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
    "anchor",
    "beacon",
    "canyon",
    "dune",
    "estuary",
    "falcon",
    "glacier",
    "heron",
    "island",
    "jasmine",
    "kelp",
    "lantern",
    "marble",
]


@dataclass(frozen=True, slots=True)
class ProfileGrid:
    """What to measure.

    Attributes:
        prompt_tokens: Prompt lengths (tokens).
        batch_sizes: Requests submitted at once.
        output_tokens: Tokens each request generates (``max_tokens``).
        repeats: Runs per cell.
    """

    prompt_tokens: tuple[int, ...] = (32, 128, 512, 1024)
    batch_sizes: tuple[int, ...] = (1, 2)
    output_tokens: int = 32
    repeats: int = 2


def prompt_of(engine: Engine, tokens: int, rng: random.Random) -> str:
    """A raw prompt of about ``tokens`` tokens (within a few) in ``engine``'s tokenizer."""
    head = " ".join(rng.choice(WORDS).capitalize() for _ in range(2)) + "."
    tail = " 1, 2, 3,"
    overhead = _count(engine, head + tail)
    words = [rng.choice(WORDS) for _ in range(max(1, tokens - overhead))]
    text = head + tail
    for _ in range(4):  # a word is one token or more: adjust by the ratio found
        text = f"{head} {' '.join(words)}{tail}"
        have = _count(engine, text)
        if abs(have - tokens) <= max(2, tokens // 50) or tokens <= overhead:
            break
        per_word = max((have - overhead) / len(words), 0.1)
        want = max(1, round((tokens - overhead) / per_word))
        words = words[:want] + [rng.choice(WORDS) for _ in range(want - len(words))]
    return text


def _count(engine: Engine, text: str) -> int:
    return engine.prepare(_request(engine, text, 1)).prompt_tokens


def _request(engine: Engine, text: str, max_tokens: int) -> InferenceRequest:
    return InferenceRequest(
        request_id=f"profile-{time.monotonic_ns()}",
        model=engine.card.model_id,
        prompt=text,
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0),
    )


@dataclass(slots=True)
class _Timing:
    prompt_tokens: int
    first_s: float
    last_s: float
    tokens: int


async def _one(engine: Engine, text: str, max_tokens: int, t0: float) -> _Timing:
    prepared = engine.prepare(_request(engine, text, max_tokens))
    first = last = None
    tokens = 0
    async for delta in engine.stream(prepared):
        if delta.completion_tokens > tokens:
            now = time.perf_counter()
            first = now if first is None else first
            last, tokens = now, delta.completion_tokens
    if first is None or last is None:
        first = last = time.perf_counter()
    return _Timing(prepared.prompt_tokens, first - t0, last - t0, tokens)


async def measure(
    engine: Engine,
    grid: ProfileGrid = ProfileGrid(),  # frozen: a safe default
    *,
    seed: int = 0,
    progress: Callable[[ProfilePoint], None] | None = None,
) -> list[ProfilePoint]:
    """Run the grid on ``engine`` (started), one cell after another.

    Returns:
        One point per (batch size, prompt length, repeat).
    """
    rng = random.Random(seed)
    await _one(engine, prompt_of(engine, 16, rng), 4, time.perf_counter())  # warm-up
    points: list[ProfilePoint] = []
    for batch in grid.batch_sizes:
        for n in grid.prompt_tokens:
            for _ in range(grid.repeats):
                texts = [prompt_of(engine, n, rng) for _ in range(batch)]
                t0 = time.perf_counter()
                done = await asyncio.gather(
                    *(_one(engine, t, grid.output_tokens, t0) for t in texts)
                )
                points.append(_point(batch, done))
                if progress is not None:
                    progress(points[-1])
    return points


def _point(batch: int, done: Sequence[_Timing]) -> ProfilePoint:
    first = min(done, key=lambda d: d.first_s)
    gaps = [(d.last_s - d.first_s) / (d.tokens - 1) for d in done if d.tokens > 1]
    makespan = max(d.last_s for d in done)
    total = sum(d.tokens for d in done)
    return ProfilePoint(
        batch=batch,
        prompt_tokens=round(sum(d.prompt_tokens for d in done) / len(done)),
        output_tokens=max(1.0, total / len(done)),
        prefill_ms=first.first_s * 1000,
        decode_ms=1000 * sum(gaps) / len(gaps) if gaps else 0.0,
        throughput_tps=total / makespan if makespan > 0 else 0.0,
    )


async def profile_engine(
    engine: Engine,
    grid: ProfileGrid = ProfileGrid(),
    *,
    engine_kind: str = "llamacpp",
    n_threads: int | None = None,
    seed: int = 0,
    progress: Callable[[ProfilePoint], None] | None = None,
) -> EngineProfile:
    """``measure`` then ``fit``: the profile of ``engine`` (already started)."""
    points = await measure(engine, grid, seed=seed, progress=progress)
    return fit(
        engine.card.model_id,
        points,
        engine=engine_kind,
        n_threads=n_threads,
        measured_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


__all__ = ["ProfileGrid", "measure", "profile_engine", "prompt_of"]
