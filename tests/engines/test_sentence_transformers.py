"""The sentence-transformers engine with the real packaged all-MiniLM-L6-v2 (no server)."""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import AsyncIterator

import pytest

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import InferenceRequest
from modelgrid.engines.base import Engine
from modelgrid.engines.embedding import EmbeddingEngine, build_embedding_engines, installed

pytestmark = pytest.mark.model
MODEL = "all-minilm-l6-v2"


@pytest.fixture
async def engine() -> AsyncIterator[EmbeddingEngine]:
    assert installed(MODEL), "pip install 'modelgrid[embeddings]'"
    [e] = build_embedding_engines([MODEL], batch_size=32)
    assert isinstance(e, EmbeddingEngine)
    await e.start()
    yield e
    await e.aclose()


def _vec(raw: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


async def test_vectors_tokens_and_card(engine: EmbeddingEngine) -> None:
    assert engine.ready and engine.dimensions == 384 and engine.max_input_tokens == 256
    assert engine.card.capabilities == frozenset({"embeddings"})
    assert await engine.count_tokens(["hello world", "a"]) == [4, 3]  # [CLS] … [SEP]
    out = await engine.embed(["hello world", "a"])
    assert out.dimensions == 384 and [len(v) for v in out.vectors] == [384 * 4, 384 * 4]
    for raw in out.vectors:
        assert math.isclose(sum(x * x for x in _vec(raw)), 1.0, rel_tol=1e-5)


async def test_same_text_same_vector_whatever_the_batch(engine: EmbeddingEngine) -> None:
    alone = (await engine.embed(["The cat sleeps."])).vectors[0]
    batch = (await engine.embed(["x " * 50, "The cat sleeps.", "dog"])).vectors[1]
    assert max(abs(a - b) for a, b in zip(_vec(alone), _vec(batch), strict=True)) < 1e-5


async def test_event_loop_stays_free_while_encoding(engine: EmbeddingEngine) -> None:
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    await engine.embed([f"sentence number {i} about something" for i in range(256)])
    elapsed = time.perf_counter() - t0
    stop = True
    await task
    assert elapsed > 0.05
    assert ticks >= elapsed / 0.005 * 0.3  # the loop kept ticking during the encode


async def test_generation_is_refused_with_a_400(engine: EmbeddingEngine) -> None:
    gen: Engine = engine  # type: ignore[assignment]
    with pytest.raises(InvalidRequestError) as exc:
        gen.prepare(InferenceRequest(request_id="r", model=MODEL, prompt="hi"))
    assert exc.value.code == "model_not_supported" and exc.value.param == "model"
