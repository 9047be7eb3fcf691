"""Calibrating an engine profile on the operator's own deployment: what the simulator needs
beyond the engine's profile, measured through the real gateway (``modelgrid plan
calibrate``), and the engine's speed during a run, read from the run's own requests.

Requests go through a ``Probe`` (the port: one streamed chat completion through the
gateway; ``planner.probe.ChatProbe`` over HTTP), each a user message of ``prompt_words``
random words that asks the model to go on counting (so it writes ``max_tokens`` tokens).
``measure`` sends:

1. one unmeasured request (warm-up), then ``requests`` one after another, each alone on an
   idle fleet: ``profile.calibrate`` turns them into the serving path's overhead (median
   TTFT less the fitted prefill) and the prefill and decode spreads;
2. for ``k`` = 2 .. ``replicas_per_host``: rounds of ``k`` requests sent at once. A round
   counts when the gateway placed its requests on ``k`` distinct replicas (its
   ``x-modelgrid-replica`` header: the router's own choice, not forced); up to ``3 x
   rounds`` are tried for ``rounds`` that count.

``apply`` sets ``host_slowdown[k - 1]`` to the median, over the counted requests at ``k``,
of measured service (last token - send - overhead) over fitted service (``service_ms``),
divided by the same median over the idle requests (so ``host_slowdown[0]`` is 1): how much
slower a replica serves while ``k`` replicas of its machine are busy, as the gateway's own
placement spreads them. This is the co-location the simulator shares over time
(``planner.sim``), measured, not assumed.

``speed_in_run`` reads the engine's speed during a run from its requests (``Sample``):
decode from each request's time per output token over the fitted step, prefill from the
requests that found their replica idle (TTFT less the overhead over the fitted prefill);
on a machine whose replicas share cores only requests that ran alone on it count. ``at_speed``
re-centres a profile's spreads on those factors, so a prediction at the run's own speed
separates the model's error from the engine's drift since it was profiled.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from modelgrid.planner.errors import PlanInputError
from modelgrid.planner.profile import EngineProfile, Observed, calibrate

WORDS = (
    "amber", "basil", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
    "juniper", "kestrel", "lagoon", "meadow", "nectar", "orchid", "pebble", "quartz", "raven",
    "saffron", "tundra", "umber", "violet", "willow", "xenon", "yarrow", "zephyr",
)  # fmt: skip


def counting_prompt(i: int, words: int, rng: random.Random) -> str:
    """A user message of ``words`` random words (distinct from the first block on, so no
    two share a routed prefix) that asks the model to go on counting."""
    body = " ".join(rng.choice(WORDS) for _ in range(words))
    return f"Note {i}: {body}. Now continue counting, one number per line: 1, 2, 3, 4,"


@dataclass(frozen=True, slots=True)
class Sample:
    """One request as the client saw it.

    Attributes:
        sent_s / first_s / last_s: Send, first and last content (s, the client's clock).
        prompt_tokens: Prompt tokens not served from the prefix cache (usage's
            ``prompt_tokens`` less ``cached_tokens``).
        output_tokens: Tokens generated.
        replica: The replica that answered (``x-modelgrid-replica``; empty: unknown).
    """

    sent_s: float
    first_s: float
    last_s: float
    prompt_tokens: int
    output_tokens: int
    replica: str = ""

    @property
    def ttft_ms(self) -> float:
        return (self.first_s - self.sent_s) * 1000

    @property
    def tpot_ms(self) -> float:
        """(last - first) / (tokens - 1) in ms; 0 for one token."""
        if self.output_tokens < 2:
            return 0.0
        return (self.last_s - self.first_s) * 1000 / (self.output_tokens - 1)

    def observed(self) -> Observed:
        return Observed(max(1, self.prompt_tokens), self.output_tokens, self.ttft_ms, self.tpot_ms)


class Probe(Protocol):
    """Sends one streamed chat completion of user message ``text`` and reports it."""

    async def __call__(self, text: str) -> Sample: ...


@dataclass(frozen=True, slots=True)
class CalibrationRun:
    """What ``measure`` sent: ``idle`` requests one at a time; ``together[k]`` the counted
    rounds of ``k`` requests at once on ``k`` distinct replicas; ``tried[k]`` rounds sent."""

    idle: tuple[Sample, ...]
    together: dict[int, tuple[tuple[Sample, ...], ...]]
    tried: dict[int, int]


async def measure(
    probe: Probe,
    *,
    requests: int = 10,
    replicas_per_host: int = 1,
    rounds: int = 3,
    prompt_words: int = 40,
    seed: int = 0,
) -> CalibrationRun:
    """Send the calibration's requests (see the module docstring).

    Args:
        probe: Sends one request through the gateway.
        requests: Idle requests, one after another (>= 1).
        replicas_per_host: Replicas of the model that share one machine (1: none).
        rounds: Counted rounds per ``k`` >= 2.
        prompt_words: Words of each user message.
        seed: The messages' words.

    Raises:
        PlanInputError: a bad count, or no round of ``k`` requests ran on ``k`` distinct
            replicas (the gateway routes the model to fewer, or names no replica).
    """
    if requests < 1 or rounds < 1 or replicas_per_host < 1:
        raise PlanInputError(
            "calibration: requests, rounds and replicas per host must be >= 1", param="requests"
        )
    rng = random.Random(seed)
    counter = iter(range(10**9))

    def text() -> str:
        return counting_prompt(next(counter), prompt_words, rng)

    await probe(text())  # warm-up: unmeasured
    idle = tuple([await probe(text()) for _ in range(requests)])
    together: dict[int, tuple[tuple[Sample, ...], ...]] = {}
    tried: dict[int, int] = {}
    for k in range(2, replicas_per_host + 1):
        counted: list[tuple[Sample, ...]] = []
        tried[k] = 0
        while len(counted) < rounds and tried[k] < 3 * rounds:
            tried[k] += 1
            done = tuple(await asyncio.gather(*(probe(text()) for _ in range(k))))
            if len({s.replica for s in done if s.replica}) == k:
                counted.append(done)
        if not counted:
            raise PlanInputError(
                f"calibration: in {tried[k]} rounds of {k} requests at once the gateway never "
                f"placed them on {k} distinct replicas: does it route this model to at least "
                f"{k} replicas (--replicas-per-host)?",
                param="--replicas-per-host",
            )
        together[k] = tuple(counted)
    return CalibrationRun(idle, together, tried)


def service_ratio(profile: EngineProfile, samples: Sequence[Sample]) -> float:
    """Median over ``samples`` of (last token - send - ``profile.overhead_ms``) over the
    fitted service time (``service_ms``); dimensionless."""
    ratios = [
        ((s.last_s - s.sent_s) * 1000 - profile.overhead_ms)
        / float(profile.service_ms(max(1, s.prompt_tokens), s.output_tokens))
        for s in samples
    ]
    return float(np.median(ratios))


def apply(profile: EngineProfile, run: CalibrationRun, *, calibrated_at: str = "") -> EngineProfile:
    """``profile`` calibrated by ``run``: overhead and spreads (``profile.calibrate`` over
    the idle requests) and ``host_slowdown`` (see the module docstring; empty when
    ``run`` has no rounds: a machine per replica).

    Raises:
        PlanInputError: ``run`` has no idle request.
    """
    out = calibrate(profile, [s.observed() for s in run.idle], calibrated_at=calibrated_at)
    if not run.together:
        return out.model_copy(update={"host_slowdown": ()})
    alone = service_ratio(out, run.idle)
    slowdown = [1.0]
    for k in sorted(run.together):
        samples = [s for rnd in run.together[k] for s in rnd]
        slowdown.append(round(service_ratio(out, samples) / alone, 4))
    return out.model_copy(update={"host_slowdown": tuple(slowdown)})


@dataclass(frozen=True, slots=True)
class Speed:
    """The engine's speed in a run over its profile's fit (dimensionless medians; ``None``
    where no request qualified) and how many requests each came from."""

    prefill: float | None
    decode: float | None
    prefill_requests: int
    decode_requests: int


def speed_in_run(
    profile: EngineProfile, samples: Sequence[Sample], *, shared_host: bool = False
) -> Speed:
    """The engine's prefill and decode speed during a run (see the module docstring).

    Args:
        profile: The profile whose fits the speeds are relative to (its ``overhead_ms`` is
            taken off each TTFT).
        samples: The run's requests, each naming its replica.
        shared_host: The replicas share one machine's cores: count only requests that no
            other request overlapped (decode: during its tokens; prefill: from send to first
            token); else a prefill counts when no request was in flight on its replica at
            its send.
    """
    decode, prefill = [], []
    for i, s in enumerate(samples):
        others = [o for j, o in enumerate(samples) if j != i]
        if s.output_tokens > 1 and not (
            shared_host and any(o.sent_s < s.last_s and o.last_s > s.first_s for o in others)
        ):
            decode.append(s.tpot_ms / float(profile.decode_ms(s.prompt_tokens, s.output_tokens)))
        if shared_host:  # nothing else on the machine from send to first token
            crowded = any(o.sent_s < s.first_s and o.last_s > s.sent_s for o in others)
        else:  # nothing ahead of it on its replica when it was sent
            crowded = any(
                o.replica == s.replica and o.sent_s <= s.sent_s < o.last_s for o in others
            )
        if not crowded:
            fitted = float(profile.prefill_ms(max(1, s.prompt_tokens)))
            prefill.append((s.ttft_ms - profile.overhead_ms) / fitted)
    return Speed(
        float(np.median(prefill)) if prefill else None,
        float(np.median(decode)) if decode else None,
        len(prefill),
        len(decode),
    )


def at_speed(profile: EngineProfile, speed: Speed) -> EngineProfile:
    """``profile`` with its prefill and decode spreads re-centred so their medians are
    ``speed``'s factors (a spread's shape kept; an empty one becomes the factor alone; a
    ``None`` factor leaves it as it is)."""

    def centred(spread: tuple[float, ...], factor: float | None) -> tuple[float, ...]:
        if factor is None:
            return spread
        if not spread:
            return (round(factor, 4),)
        mid = float(np.median(spread))
        return tuple(round(x * factor / mid, 4) for x in spread)

    return profile.model_copy(
        update={
            "prefill_spread": centred(profile.prefill_spread, speed.prefill),
            "decode_spread": centred(profile.decode_spread, speed.decode),
        }
    )


__all__ = [
    "CalibrationRun",
    "Probe",
    "Sample",
    "Speed",
    "apply",
    "at_speed",
    "counting_prompt",
    "measure",
    "service_ratio",
    "speed_in_run",
]
