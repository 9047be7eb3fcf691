"""``core.periodic``: a background loop stops between rounds, never inside one."""

from __future__ import annotations

import asyncio
import logging

import pytest

from modelgrid.core.periodic import Periodic


async def test_steps_repeat_until_stopped() -> None:
    rounds = 0

    async def step() -> None:
        nonlocal rounds
        rounds += 1

    loop = Periodic("count", 0.01, step)
    loop.start()
    while rounds < 3:  # noqa: ASYNC110 (polling the counter is the point)
        await asyncio.sleep(0.005)
    await loop.stop()
    seen = rounds
    await asyncio.sleep(0.05)
    assert rounds == seen  # no round after stop


async def test_stop_waits_for_the_round_in_progress() -> None:
    inside, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def step() -> None:
        inside.set()
        await release.wait()  # as a database call would
        finished.append("committed")

    loop = Periodic("slow", 0.0, step)
    loop.start()
    await inside.wait()
    stopping = asyncio.create_task(loop.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # stop waits; it does not cut the step
    release.set()
    await stopping
    assert finished == ["committed"]


async def test_a_failing_step_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds = 0

    async def step() -> None:
        nonlocal rounds
        rounds += 1
        raise OSError("disk gone")

    loop = Periodic("retention", 0.001, step)
    with caplog.at_level(logging.ERROR, "modelgrid.periodic"):
        loop.start()
        while rounds < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        await loop.stop()
    assert caplog.records[0].getMessage() == "retention failed; it runs again in 0.001 s"


async def test_a_hung_step_is_cancelled_after_the_timeout() -> None:
    inside = asyncio.Event()
    cancelled = False

    async def step() -> None:
        nonlocal cancelled
        inside.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled = True
            raise

    loop = Periodic("hung", 0.0, step)
    loop.start()
    await inside.wait()
    await loop.stop(timeout_s=0.05)
    assert cancelled
