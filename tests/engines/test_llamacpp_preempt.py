"""A request cancelled during its prefill (online: its client left; or a batch line) frees
the llama.cpp replica inside its decode step; an online request decodes without the abort
callback. Real model, in process: one prefill of ~600 tokens in ONE decode step (n_batch
1024) is cancelled 0.1 s in; what the context then holds tells whether llama.cpp finished the
step (every prompt token evaluated) or aborted it (none)."""

from __future__ import annotations

import asyncio

import pytest

from modelgrid.config import Settings
from modelgrid.core.types import ChatMessage, InferenceRequest, SamplingParams
from modelgrid.engines.catalog import CATALOG
from modelgrid.engines.llamacpp import LlamaCppEngine

pytestmark = [pytest.mark.model, pytest.mark.timeout(180)]
MODEL = "qwen2.5-coder-0.5b-instruct"


def _request(preemptible: bool) -> InferenceRequest:
    text = " ".join(f"item {i} of the catalogue is a blue widget;" for i in range(60))
    return InferenceRequest(
        "r",
        MODEL,
        messages=[ChatMessage("user", text)],
        sampling=SamplingParams(max_tokens=8, temperature=0),
        preemptible=preemptible,
    )


async def _cancel_during_prefill(engine: LlamaCppEngine, preemptible: bool) -> tuple[int, int]:
    prepared = engine.prepare(_request(preemptible))

    async def consume() -> None:
        async for _ in engine.stream(prepared):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.get_running_loop().run_in_executor(engine._executor, lambda: None)  # idle
    assert engine._llm is not None
    held = engine._llm.n_tokens
    engine._llm.reset()  # the next case starts from an empty cache
    return prepared.prompt_tokens, held


async def test_a_request_cancelled_in_its_prefill_is_aborted_inside_its_step() -> None:
    path = Settings().models_dir / CATALOG[MODEL].filename
    engine = LlamaCppEngine(MODEL, path, n_ctx=2048, n_threads=2, n_batch=1024)
    await engine.start()
    try:
        for preemptible in (False, True):  # an online request whose client left; a batch line
            prompt, held = await _cancel_during_prefill(engine, preemptible)
            assert prompt > 500 and held == 0  # aborted inside the step; nothing of it kept
        # past its prefill, an online request decodes without the callback, a batch line with
        for preemptible, armed in ((False, False), (True, True)):
            prepared = engine.prepare(_chat("Count to twenty.", preemptible, max_tokens=6))
            stream = engine.stream(prepared)
            await anext(stream)
            assert (engine._abort_on is not None) is armed
            async for _ in stream:
                pass
            assert engine._abort_on is None
        prepared = engine.prepare(_request(preemptible=True))
        prepared.request.messages = [ChatMessage("user", "Say hi.")]
        prepared = engine.prepare(prepared.request)
        texts = [d.text async for d in engine.stream(prepared)]
        assert "".join(texts)  # the replica serves the next request normally
    finally:
        await engine.aclose()


def _chat(text: str, preemptible: bool, max_tokens: int = 8) -> InferenceRequest:
    return InferenceRequest(
        "r",
        MODEL,
        messages=[ChatMessage("user", text)],
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0),
        preemptible=preemptible,
    )


async def _run(engine: LlamaCppEngine, request: InferenceRequest) -> tuple[int, str]:
    prepared = engine.prepare(request)
    text = "".join([d.text async for d in engine.stream(prepared)])
    return prepared.cached_prompt_tokens, text


async def test_the_online_prefix_survives_batch_lines_finished_or_aborted() -> None:
    """A batch line between two online requests leaves the second one the same cached prefix
    (and, greedy, the same answer) as if the line had never run: the online cache is kept
    aside and put back (``_OnlinePrefix``)."""
    path = Settings().models_dir / CATALOG[MODEL].filename
    engine = LlamaCppEngine(MODEL, path, n_ctx=2048, n_threads=2, n_batch=512)
    await engine.start()
    try:
        await _run(engine, _chat("Say hello to user 1.", False))
        alone = await _run(engine, _chat("Say hello to user 2.", False))
        assert alone[0] > 20  # the template and "Say hello to user" came from the cache
        await _run(engine, _chat("Say hello to user 1.", False))
        await _run(engine, _chat("Ticket 7: late order.", True))  # a finished batch line
        prepared = engine.prepare(_chat("Ticket 8: " + "late order. " * 40, True, 64))

        async def consume() -> None:
            async for _ in engine.stream(prepared):
                pass

        task = asyncio.create_task(consume())  # an aborted one
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _run(engine, _chat("Say hello to user 2.", False)) == alone
    finally:
        await engine.aclose()
