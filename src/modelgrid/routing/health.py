"""Replica health: circuit breakers fed by passive failure counts and active probes.

Each replica has a ``CircuitBreaker``:

- **closed** (normal): requests flow; ``failure_threshold`` consecutive failures open it.
- **open**: no request is sent until ``cooldown_s`` has passed since it opened.
- **half-open**: after the cool-down one trial request may go; its success closes the
  breaker, its failure opens it again with the cool-down doubled (up to ``max_cooldown_s``),
  so a replica that stays down costs one failed attempt per cool-down.

A successful active probe closes an open breaker at once, cool-down or not: a replica that is
reachable again takes traffic within one probe interval, however long it was down. When every
replica a request may use has an open breaker, the router sends it to one of them as a trial
(``CircuitBreaker.force_trial``) rather than refuse it: a deployment is never locked out by its
own breakers.

Failures are counted passively (the router reports every attempt's outcome: connection
refused, a 5xx, a dropped stream) and actively: ``HealthMonitor`` GETs each upstream
replica's health URL every ``interval_s`` and also measures the round trip, which the router
may use as the region's latency. Clocks are injected (``clock``) so tests control time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger("modelgrid.routing")

Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class CircuitBreaker:
    """Closed → open after ``failure_threshold`` consecutive failures → half-open after the
    cool-down → closed on a success (see the module docstring)."""

    failure_threshold: int = 3
    cooldown_s: float = 5.0
    max_cooldown_s: float = 60.0
    clock: Clock = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    current_cooldown_s: float = 0.0
    trial_in_flight: bool = False

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at >= self.current_cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allows(self) -> bool:
        """Whether a request may be sent now (half-open: only while no trial is running)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and not self.trial_in_flight

    def retry_in_s(self) -> float:
        """Seconds until the breaker lets a request through (0 when it does now)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.current_cooldown_s - self.clock())

    def on_send(self) -> None:
        """A request was sent; in half-open it is the trial."""
        if self.state is BreakerState.HALF_OPEN:
            self.trial_in_flight = True

    def on_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.current_cooldown_s = 0.0
        self.trial_in_flight = False

    def on_failure(self) -> None:
        state = self.state
        self.trial_in_flight = False
        if state is BreakerState.HALF_OPEN:
            self._open(min(self.max_cooldown_s, max(self.cooldown_s, self.current_cooldown_s * 2)))
            return
        if state is BreakerState.OPEN:
            return
        self.failures += 1
        if self.failures >= self.failure_threshold:
            self._open(self.cooldown_s)

    def force_trial(self) -> bool:
        """Let one request through an open breaker (no other replica can take it); ``False``
        when a trial is already running. Its success closes the breaker."""
        if self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def on_abandon(self) -> None:
        """A request ended without a verdict (client went away): free the trial slot."""
        self.trial_in_flight = False

    def _open(self, cooldown_s: float) -> None:
        self.opened_at = self.clock()
        self.current_cooldown_s = cooldown_s


@dataclass(slots=True)
class ReplicaHealth:
    """Live state of one replica: its breaker, load, probe results and round-trip time."""

    breaker: CircuitBreaker
    in_flight: int = 0
    # placements made and not yet sent (``Router.reserve``): their expiry times, oldest first
    reserved: deque[float] = field(default_factory=deque)
    queue_depth: int = 0
    rtt_ms: float | None = None
    last_probe_ok: bool | None = None
    last_error: str | None = None
    served: int = 0  # requests: attempts the replica answered
    failed: int = 0  # requests: attempts that failed on the replica's side
    abandoned: int = 0  # requests: attempts the client gave up on
    probe_failures: int = 0  # active probes that failed (they feed the breaker too)

    def observe_rtt(self, ms: float, alpha: float = 0.3) -> None:
        """Fold a probe's round trip into an exponentially weighted average."""
        self.rtt_ms = ms if self.rtt_ms is None else (1 - alpha) * self.rtt_ms + alpha * ms


@dataclass(slots=True)
class HealthBook:
    """Health of every replica by id (created on first use, kept across topology changes)."""

    failure_threshold: int = 3
    cooldown_s: float = 5.0
    max_cooldown_s: float = 60.0
    clock: Clock = time.monotonic
    replicas: dict[str, ReplicaHealth] = field(default_factory=dict)

    def of(self, replica_id: str) -> ReplicaHealth:
        h = self.replicas.get(replica_id)
        if h is None:
            h = ReplicaHealth(
                CircuitBreaker(
                    self.failure_threshold, self.cooldown_s, self.max_cooldown_s, self.clock
                )
            )
            self.replicas[replica_id] = h
        return h

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the state of replicas no longer in the topology."""
        kept = set(keep)
        for rid in [r for r in self.replicas if r not in kept]:
            del self.replicas[rid]

    def success(self, replica_id: str) -> None:
        h = self.of(replica_id)
        h.served += 1
        h.last_error = None
        h.breaker.on_success()

    def failure(self, replica_id: str, reason: str) -> None:
        h = self.of(replica_id)
        h.failed += 1
        h.last_error = reason
        h.breaker.on_failure()


Probe = Callable[[str], Awaitable[tuple[bool, int]]]
"""Check one replica (by id) or URL: (healthy, queue depth it reports, 0 if none)."""


def http_probe(
    timeout_s: float,
) -> tuple[Callable[[str], Awaitable[tuple[int, int]]], Callable[[], Awaitable[None]]]:
    """A GET over one shared ``httpx.AsyncClient``, and the function that closes it.

    The GET returns the status code and the ``queue_depth`` of a JSON body (0 if none), as
    ``modelgrid engine`` workers report on ``/health/ready``.
    """
    import httpx

    client = httpx.AsyncClient(timeout=timeout_s, trust_env=False)

    async def get(url: str) -> tuple[int, int]:
        r = await client.get(url)
        queue = 0
        if r.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                queue = int(r.json().get("queue_depth") or 0)
        return r.status_code, queue

    return get, client.aclose


class HealthMonitor:
    """Probes every upstream replica periodically and feeds the ``HealthBook``.

    Args:
        book: Where results go.
        targets: Returns the replica ids to probe (re-read each round, so topology changes
            apply at the next round).
        probe: Checks one replica by id; exceptions count as failures.
        interval_s: Time between rounds.
    """

    def __init__(
        self,
        book: HealthBook,
        targets: Callable[[], list[str]],
        probe: Probe,
        *,
        interval_s: float = 2.0,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.book = book
        self.targets = targets
        self.probe = probe
        self.interval_s = interval_s
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def probe_once(self) -> None:
        """Probe every target concurrently and record the results."""
        targets = self.targets()
        if targets:
            await asyncio.gather(*(self._probe(rid) for rid in targets))

    async def _probe(self, replica_id: str) -> None:
        started = self.clock()
        try:
            ok, queue = await self.probe(replica_id)
            reason = "health check failed"
        except Exception as exc:  # any failure to answer is a failed probe
            ok, queue, reason = False, 0, f"probe: {type(exc).__name__}"
        h = self.book.of(replica_id)
        h.last_probe_ok = ok
        if ok:
            h.observe_rtt((self.clock() - started) * 1000)
            h.queue_depth = queue
            # A good probe closes an open breaker at once, however long its cool-down had
            # left: a replica that is back takes traffic within one probe interval. It does
            # not clear the failure count of a closed breaker (a replica may answer probes
            # yet fail every request: three such failures open it again).
            if h.breaker.state is not BreakerState.CLOSED:
                h.breaker.on_success()
        else:
            h.probe_failures += 1
            h.last_error = reason
            h.breaker.on_failure()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="probes")

    async def _run(self) -> None:
        while True:
            try:
                await self.probe_once()
            except Exception:
                log.exception("health probes failed")
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "HealthBook",
    "HealthMonitor",
    "ReplicaHealth",
    "http_probe",
]
