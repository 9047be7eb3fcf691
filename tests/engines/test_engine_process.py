"""``EngineProcess`` and ``ProcessEngine`` on their own: start, crash loop, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

import pytest

from modelgrid.core.errors import EngineError, EngineRestartingError
from modelgrid.core.types import ChatMessage, InferenceRequest
from modelgrid.engines.base import ModelCard
from modelgrid.engines.process import (
    EngineProcess,
    ProcessState,
    advice,
    child_cpu_s,
    exit_name,
)
from modelgrid.engines.process_engine import ProcessEngine

pytestmark = pytest.mark.e2e


def _request() -> InferenceRequest:
    return InferenceRequest("r1", "m", messages=[ChatMessage("user", "hi")])


def _fake(**kwargs: float) -> ProcessEngine:
    process = EngineProcess("m", ["--model", "m", "--engine", "fake"], **kwargs)  # type: ignore[arg-type]
    return ProcessEngine(process, ModelCard("m", "modelgrid", 0, 64), restart_wait_s=10)


def test_exit_names_and_advice() -> None:
    assert (exit_name(-9), exit_name(-11), exit_name(2)) == ("SIGKILL", "SIGSEGV", "exit 2")
    assert "llama_build.py ensure --level avx2" in advice(-signal.SIGILL)
    assert "out of memory" in advice(-signal.SIGKILL)


async def test_serves_then_stops_its_child() -> None:
    engine = _fake()
    await engine.start()
    try:
        pid = engine.process.status().pid
        assert engine.ready and pid is not None
        # not in the gateway's process group: a terminal's Ctrl-C does not reach it
        assert os.getpgid(pid) == pid != os.getpgid(os.getpid())
        text = "".join([d.text async for d in engine.stream(engine.prepare(_request()))])
        assert text == "Paris is the capital of France."
    finally:
        await engine.aclose()
    assert engine.process.state is ProcessState.STOPPED
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # SIGTERM on shutdown: no orphan


async def test_a_crash_loop_fails_the_start_is_logged_once_and_refuses_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "modelgrid.engines.process")
    # ``--engine bogus``: the child exits with status 2 at once, every time.
    process = EngineProcess(
        "m", ["--model", "m", "--engine", "bogus"], backoff_initial_s=0.05, backoff_max_s=0.2
    )
    engine = ProcessEngine(process, ModelCard("m", "modelgrid", 0, 64), restart_wait_s=0.5)
    try:
        with pytest.raises(EngineError, match=r"died 3 times \(exit 2\)"):
            await engine.start()
        assert process.crash_loop and not engine.ready
        deadline = asyncio.get_running_loop().time() + 30
        while process.restarts < 5:  # more deaths (each child takes a Python start-up)
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
        assert sum("is in a crash loop" in r.message for r in caplog.records) == 1
        with pytest.raises(EngineRestartingError) as info:
            async for _ in engine.stream(engine.prepare(_request())):
                pass
        assert info.value.retryable and info.value.retry_after_s is not None
        assert info.value.code == "engine_restarting"
    finally:
        await engine.aclose()


def test_a_hang_is_no_token_and_no_cpu_and_a_long_prefill_is_no_hang() -> None:
    p = EngineProcess("m", ["--model", "m"], hang_timeout_s=10)
    assert not p._hung(9.9, 0.0)  # not long enough yet
    assert p._hung(10.0, 0.5)  # stopped or deadlocked: under a tenth of a core
    assert not p._hung(30.0, 45.0)  # a long prompt's prefill: computing, no token yet
    assert p._hung(100.0, 150.0)  # computing for ten times the timeout without a token
    assert child_cpu_s(os.getpid()) > 0 and child_cpu_s(2**22 + 12345) == 0.0


def test_the_prompt_estimate_learns_the_template_overhead_from_exact_counts() -> None:
    engine = _fake()
    first = engine.prepare(_request())
    estimate = first.prompt_tokens
    first.report_prompt_tokens(estimate + 21)  # the child's exact count, at the end
    engine._learn(first, estimate)
    second = engine.prepare(_request())
    assert second.prompt_tokens == estimate + 21 and second.prompt_tokens_estimated
    smaller = engine.prepare(_request())
    smaller.report_prompt_tokens(estimate + 3)
    engine._learn(smaller, estimate)  # the largest shortfall is kept
    assert engine.prepare(_request()).prompt_tokens == estimate + 21


async def test_a_child_whose_port_was_taken_moves_to_a_new_one() -> None:
    engine = _fake(backoff_initial_s=0.05)
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken.bind(("127.0.0.1", engine.process.port))
    taken.listen()
    first = engine.process.port
    prepared = engine.prepare(_request())  # encoded for the taken port
    try:
        await engine.start()  # the first child cannot bind: the next one gets another port
        assert engine.process.port != first and engine.process.restarts >= 1
        text = "".join([d.text async for d in engine.stream(prepared)])
        assert text == "Paris is the capital of France."
    finally:
        taken.close()
        await engine.aclose()
