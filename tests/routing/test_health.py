"""Circuit breakers (closed → open → half-open → closed) and the active prober."""

from __future__ import annotations

import asyncio

from modelgrid.routing.health import BreakerState, CircuitBreaker, HealthBook, HealthMonitor
from tests.clock import Clock


def test_breaker_opens_after_k_consecutive_failures_only() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=3, cooldown_s=5, clock=clock)
    b.on_failure()
    b.on_failure()
    b.on_success()  # a success in between resets the count
    b.on_failure()
    b.on_failure()
    assert b.state is BreakerState.CLOSED and b.allows()
    b.on_failure()
    assert b.state is BreakerState.OPEN and not b.allows()
    assert b.retry_in_s() == 5


def test_half_open_lets_one_trial_through_and_its_outcome_decides() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=5, max_cooldown_s=12, clock=clock)
    b.on_failure()
    clock.now += 4.9
    assert not b.allows()
    clock.now += 0.1
    assert b.state is BreakerState.HALF_OPEN and b.allows()
    b.on_send()  # the trial
    assert not b.allows()  # nobody else while it runs
    b.on_failure()  # trial failed: open again, cool-down doubled
    assert b.state is BreakerState.OPEN and b.retry_in_s() == 10
    clock.now += 10
    b.on_send()
    b.on_failure()
    assert b.retry_in_s() == 12  # capped
    clock.now += 12
    b.on_send()
    b.on_success()
    assert b.state is BreakerState.CLOSED and b.allows() and b.retry_in_s() == 0


def test_an_abandoned_trial_frees_the_slot() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=1, clock=clock)
    b.on_failure()
    clock.now += 1
    b.on_send()
    assert not b.allows()
    b.on_abandon()
    assert b.allows()


def test_failures_while_open_do_not_extend_the_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock)
    b.on_failure()
    clock.now += 3
    b.on_failure()  # e.g. a request that was already running
    assert b.retry_in_s() == 2


def test_monitor_probes_feed_breakers_and_rtt() -> None:
    clock = Clock()
    book = HealthBook(failure_threshold=2, cooldown_s=5, clock=clock)
    answers = {"up": (True, 3), "down": None}

    async def probe(replica_id: str) -> tuple[bool, int]:
        answer = answers[replica_id]
        if answer is None:
            raise ConnectionRefusedError
        return answer

    ticks = iter([0.0, 0.004, 0.0, 0.0] * 20)
    monitor = HealthMonitor(book, lambda: ["up", "down"], probe, clock=lambda: next(ticks))

    async def rounds(n: int) -> None:
        for _ in range(n):
            await monitor.probe_once()

    asyncio.run(rounds(2))
    up, down = book.of("up"), book.of("down")
    assert up.last_probe_ok and up.queue_depth == 3 and up.rtt_ms is not None
    assert down.last_probe_ok is False and down.breaker.state is BreakerState.OPEN
    assert down.last_error == "probe: ConnectionRefusedError"
    # Down for long: each failed trial doubles the cool-down, up to 60 s.
    for _ in range(5):
        clock.now += down.breaker.retry_in_s()
        asyncio.run(rounds(1))
    assert down.breaker.state is BreakerState.OPEN and down.breaker.retry_in_s() == 60
    # Back up: the first good probe closes the breaker at once, cool-down or not.
    answers["down"] = (True, 0)
    asyncio.run(rounds(1))
    assert down.breaker.state is BreakerState.CLOSED and down.breaker.allows()


def test_a_good_probe_does_not_clear_request_failures_of_a_closed_breaker() -> None:
    book = HealthBook(failure_threshold=2)

    async def probe(_rid: str) -> tuple[bool, int]:
        return True, 0

    monitor = HealthMonitor(book, lambda: ["r"], probe)
    book.failure("r", "500")
    asyncio.run(monitor.probe_once())
    book.failure("r", "500")
    assert book.of("r").breaker.state is BreakerState.OPEN
