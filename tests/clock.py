"""A clock for tests of time-based rules (breakers, rate windows, cache expiry)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Clock:
    """Stands still until the test moves it (``clock.now += 5``); called, it gives the time
    in seconds, like ``time.monotonic``."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now
