"""Calibrating an engine profile on the operator's own deployment: what the simulator needs
beyond the engine's profile, measured through the real gateway (``modelgrid plan
calibrate``), and the engine's speed during a run, read from the run's own requests.

Requests go through a ``Probe`` (the port: one streamed chat completion through the
gateway; ``planner.probe.ChatProbe`` over HTTP), each a user message of ``prompt_words``
random words that asks the model to go on counting (so it writes ``max_tokens`` tokens).
``measure`` sends one unmeasured request (warm-up), then the requests of 1 with the rounds
of 2 and 3 spread evenly among them (``interleave``; a round in turn of each kind), so that
both sides of each comparison sample the same minutes: the engine's speed on a shared
machine wanders by ±10 % over tens of seconds (validation, bench/RESULTS.md), and a drift
between the idle requests and the rounds sent after them read as overhead or as host
slowdown (validation run 10 read 1.21 for two workers on two cores; alternating 20 s phases
of one and of two busy workers, on the next machine, 0.95-1.05):

1. ``requests`` one after another, each alone on an idle fleet: ``profile.calibrate`` turns
   them into the serving path's overhead (median TTFT less the prefill) and the prefill and
   decode spreads;
2. ``rounds`` rounds of ``replicas_per_host + 1`` requests at once (``STAGGER_S`` apart,
   as every round "at once"): one more than the
   replicas, so the gateway queues one behind another on its replica. Such a request's
   first token comes a prefill after the one ahead's last token (its HTTP hops, template
   and routing ran while it waited): the engine's prefill now, apart from the serving
   path (``waited``). An idle request's TTFT is path + prefill, so without this a drift of
   the engine's speed since the profile would read as overhead — and the simulator adds
   overhead before a replica's queue (hidden by a wait) but prefill inside its service
   (adding to every wait behind it);
3. for ``k`` = 2 .. ``replicas_per_host``: rounds of ``k`` requests sent at once. A round
   counts when the gateway placed its requests on ``k`` distinct replicas (its
   ``x-modelgrid-replica`` header: the router's own choice, not forced; one that does not is
   tried again at once); up to ``3 x rounds`` are tried for ``rounds`` that count. Each
   counted round — and the first ``replicas_per_host`` requests of each round of step 2,
   which ran side by side the same way (``rounds_at_once``) — is compared with the
   ``NEIGHBOURS`` idle requests sent nearest it (``host_slowdown``).

``apply`` takes the prefill speed as the median, over the queued requests, of their prefill
work (first token - the one ahead's last token, each ms counted at ``1 / host_slowdown[k -
1]`` while ``k`` requests of the round were in flight on the machine: the others' replicas
share its cores) over the fitted prefill (``profile.calibrate``'s ``prefill_speed``; none
queued: the fit's).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

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


STAGGER_S = 0.05
"""Gap between the sends of a round "at once": the gateway's router counts a request in
flight from the start of its stream, not from its placement, so requests sent within the
same few ms all see the same loads and the same tie-break and land on one replica."""

NEIGHBOURS = 4
"""Idle requests, the nearest in time, that ``host_slowdown`` compares each round with."""

SLOWDOWN_ALPHA = 0.05
"""Significance level of ``host_slowdown``'s test (the exact one-sided Wilcoxon signed-rank
test): with 5 rounds of ``k``, all 5 must be slower than with ``k - 1`` busy (p = 1/32);
with 10, e.g. 8 slower and the 2 faster ones by the least (p = 5/1024)."""

MIN_SLOWDOWN_ROUNDS = 5
"""Fewest rounds of ``k`` at once that can pass that test (4: p = 1/16 at best)."""


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
    rounds of ``k`` requests at once on ``k`` distinct replicas; ``tried[k]`` rounds sent;
    ``crowded`` the rounds of one more request than replicas (step 2)."""

    idle: tuple[Sample, ...]
    together: dict[int, tuple[tuple[Sample, ...], ...]]
    tried: dict[int, int]
    crowded: tuple[tuple[Sample, ...], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Every request, for the record (``plan calibrate --record``): ``{"idle": [sample,
        ...], "crowded": [[sample, ...], ...], "together": {"k": [[sample, ...], ...]},
        "tried": {"k": n}}``, a sample as ``Sample``'s fields (times in s)."""

        def rounds(rs: Sequence[Sequence[Sample]]) -> list[list[dict[str, Any]]]:
            return [[asdict(x) for x in rnd] for rnd in rs]

        return {
            "idle": [asdict(x) for x in self.idle],
            "crowded": rounds(self.crowded),
            "together": {str(k): rounds(v) for k, v in self.together.items()},
            "tried": {str(k): n for k, n in self.tried.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CalibrationRun:
        """The run ``to_json`` wrote."""

        def rounds(rs: list[list[dict[str, Any]]]) -> tuple[tuple[Sample, ...], ...]:
            return tuple(tuple(Sample(**x) for x in rnd) for rnd in rs)

        return cls(
            tuple(Sample(**x) for x in data["idle"]),
            {int(k): rounds(v) for k, v in data["together"].items()},
            {int(k): int(n) for k, n in data["tried"].items()},
            rounds(data["crowded"]),
        )


async def measure(
    probe: Probe,
    *,
    requests: int = 10,
    replicas_per_host: int = 1,
    rounds: int = 3,
    prompt_words: int = 40,
    seed: int = 0,
    spacing_s: float = 0.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> CalibrationRun:
    """Send the calibration's requests (see the module docstring).

    Args:
        probe: Sends one request through the gateway.
        requests: Idle requests, one after another (>= 1).
        replicas_per_host: Replicas of the model that share one machine (1: none).
        rounds: Rounds of ``replicas_per_host + 1`` at once, and counted rounds per
            ``k`` >= 2.
        prompt_words: Words of each user message.
        seed: The messages' words.
        spacing_s: Idle time before each idle request and each round (s): spreads the
            calibration over minutes, so that the spreads sample the machine's disturbances
            over time (a neighbour's burst then touches one request of many, not a run of
            them) — each sample is still taken on an idle fleet.
        sleep: Waits ``spacing_s`` (tests pass a recorder).

    Raises:
        PlanInputError: a bad count, a negative ``spacing_s``, or no round of ``k`` requests ran on ``k`` distinct
            replicas (the gateway routes the model to fewer, or names no replica).
    """
    if requests < 1 or rounds < 1 or replicas_per_host < 1:
        raise PlanInputError(
            "calibration: requests, rounds and replicas per host must be >= 1", param="requests"
        )
    if not spacing_s >= 0:
        raise PlanInputError("calibration: spacing must be >= 0 s", param="spacing_s")
    rng = random.Random(seed)
    counter = iter(range(10**9))

    def text() -> str:
        return counting_prompt(next(counter), prompt_words, rng)

    async def spaced() -> Sample:
        if spacing_s:
            await sleep(spacing_s)
        return await probe(text())

    async def staggered(k: int) -> tuple[Sample, ...]:
        if spacing_s:
            await sleep(spacing_s)

        async def one(i: int) -> Sample:
            await asyncio.sleep(i * STAGGER_S)
            return await probe(text())

        return tuple(await asyncio.gather(*(one(i) for i in range(k))))

    # the rounds, kind by kind in turn (0: crowded; k: k at once), among the idle requests
    kinds = [k for _ in range(rounds) for k in (0, *range(2, replicas_per_host + 1))]
    after = interleave(requests, len(kinds))
    await probe(text())  # warm-up: unmeasured
    idle: list[Sample] = []
    crowded: list[tuple[Sample, ...]] = []
    together: dict[int, list[tuple[Sample, ...]]] = {k: [] for k in kinds if k}
    tried: dict[int, int] = {k: 0 for k in together}
    slots = iter(zip(after, kinds, strict=True))
    slot = next(slots, None)
    for i in range(requests + 1):
        while slot is not None and slot[0] == i:
            k = slot[1]
            if not k:
                crowded.append(await staggered(replicas_per_host + 1))
            else:  # retried until the router placed it on k distinct replicas
                while len(together[k]) < rounds and tried[k] < 3 * rounds:
                    tried[k] += 1
                    done = await staggered(k)
                    if len({s.replica for s in done if s.replica}) == k:
                        together[k].append(done)
                        break
                if not together[k] and tried[k] >= 3 * rounds:  # said at once, not at the end
                    raise PlanInputError(
                        f"calibration: in {tried[k]} rounds of {k} requests at once the gateway "
                        f"never placed them on {k} distinct replicas: does it route this model "
                        f"to at least {k} replicas (--replicas-per-host)?",
                        param="--replicas-per-host",
                    )
            slot = next(slots, None)
        if i < requests:
            idle.append(await spaced())
    return CalibrationRun(
        tuple(idle), {k: tuple(v) for k, v in together.items()}, tried, tuple(crowded)
    )


def interleave(requests: int, rounds: int) -> list[int]:
    """Where ``rounds`` rounds go among ``requests`` idle requests, evenly: round ``j``
    before idle request ``floor((j + 1) x requests / (rounds + 1) + 1/2)`` (``requests``:
    after the last), non-decreasing."""
    return [int((j + 1) * requests / (rounds + 1) + 0.5) for j in range(rounds)]


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
    observed = [s.observed() for s in run.idle]
    first = calibrate(profile, observed, calibrated_at=calibrated_at)
    speed, _ = prefill_speed(profile, run.crowded, host_slowdown(first, run))
    out = calibrate(profile, observed, calibrated_at=calibrated_at, prefill_speed=speed or 1.0)
    slowdown = host_slowdown(out, run)
    return out.model_copy(update={"host_slowdown": slowdown, "calibrated_host_slowdown": slowdown})


def host_slowdown(profile: EngineProfile, run: CalibrationRun) -> tuple[float, ...]:
    """``(1, s_2, ...)`` from ``run``'s rounds at once (see the module docstring), service
    measured less ``profile.overhead_ms``; empty without rounds.

    Each round's ratio is its service ratio over that of the ``NEIGHBOURS`` idle requests
    sent nearest it in time (a paired comparison, so a drift of the engine's speed over the
    calibration cancels out). ``s_k`` is the median of the rounds of ``k``'s ratios when
    they are significantly above ``s_(k-1)`` — the exact one-sided Wilcoxon signed-rank
    test on their logarithms (``signed_rank_p``) at ``SLOWDOWN_ALPHA`` — and ``s_(k-1)``
    otherwise: more busy replicas never make one faster, and a median of a few rounds
    within the engine's own wander (±10 % over tens of seconds on a shared VM) is no
    measured slowdown. Validation run 11 read 1.099 at 2 busy from 5 rounds on two cores,
    where alternating phases of one and two busy workers show 0.95-1.05; as 1.099 it put
    that fleet's TTFT p50 at 0.85 load 55 % over the measured, as 1 at 15 %. The signed-rank
    test weighs how far each round is off, not only its side (the sign test of runs 12-16,
    which needed 9 of 10 rounds slower), so a consistent slowdown of a few % shows in 10
    rounds while one outlying round cannot make one."""
    if not run.together:
        return ()
    slowdown = [1.0]
    for k in sorted(run.together):
        ratios = slowdown_ratios(profile, run, k)
        below = slowdown[-1]
        significant = slowdown_p(ratios, below) <= SLOWDOWN_ALPHA
        slowdown.append(round(float(np.median(ratios)), 4) if significant else below)
    return tuple(slowdown)


def slowdown_p(ratios: Sequence[float], below: float) -> float:
    """``signed_rank_p`` of ``ratios`` (rounds' service ratios) being above ``below`` (the
    slowdown at one fewer busy), on their logarithms."""
    return signed_rank_p([math.log(r / below) for r in ratios])


def signed_rank_p(differences: Sequence[float]) -> float:
    """One-sided p-value of the exact Wilcoxon signed-rank test that ``differences`` lie
    above 0 (Conover, *Practical Nonparametric Statistics*, 3rd ed., 5.7): zeros dropped,
    the others ranked by absolute value (ties: their mean rank), ``T+`` the sum of the
    positive ones' ranks, and p = P(T+ >= observed) when each rank's sign is + or - with
    probability 1/2, counted exactly over all ``2^n`` sign patterns (by subset sums of the
    doubled ranks, integers even with ties). 1.0 with no nonzero difference."""
    d = np.asarray([x for x in differences if x != 0], dtype=np.float64)
    if not d.size:
        return 1.0
    order = np.abs(d)
    ranks = np.empty(d.size)
    for i, value in enumerate(order):  # mean rank: 1 + (below) + (equal - 1) / 2
        ranks[i] = 1 + np.sum(order < value) + (np.sum(order == value) - 1) / 2
    doubled = np.rint(2 * ranks).astype(np.int64)
    counts = np.zeros(int(doubled.sum()) + 1)
    counts[0] = 1.0
    for r in doubled:  # counts[w]: sign patterns whose positive doubled ranks sum to w
        counts[r:] = counts[r:] + counts[: counts.size - r]
    observed = int(doubled[d > 0].sum())
    return float(counts[observed:].sum() / 2.0**d.size)


def rounds_at_once(run: CalibrationRun, k: int) -> list[tuple[Sample, ...]]:
    """The rounds of ``k`` requests served at once on ``k`` distinct replicas: the counted
    rounds of ``k`` (``run.together``), and the first ``k`` of each crowded round of ``k +
    1`` when the router placed them on ``k`` distinct (named) replicas — those ran side by
    side like a round of ``k`` (the last one queued behind one of them), so a fleet's
    slowdown at ``k`` = replicas per host is read from twice the rounds at no cost
    (validation run 18: 1.078 from the 10 rounds of 2, 1.065 from the 10 crowded ones, 1.06-
    1.07 over the level that followed)."""
    out = list(run.together.get(k, ()))
    for rnd in run.crowded:
        first = rnd[:k]
        if len(rnd) == k + 1 and len({s.replica for s in first if s.replica}) == k:
            out.append(tuple(first))
    return out


def slowdown_ratios(profile: EngineProfile, run: CalibrationRun, k: int) -> list[float]:
    """Per round of ``k`` at once (``rounds_at_once``): its service ratio over that of the
    ``NEIGHBOURS`` idle requests sent nearest it (``service_ratio``; dimensionless)."""
    ratios = []
    for rnd in rounds_at_once(run, k):
        sent = min(s.sent_s for s in rnd)
        near = sorted(run.idle, key=lambda s: abs(s.sent_s - sent))[:NEIGHBOURS]
        ratios.append(service_ratio(profile, rnd) / service_ratio(profile, near))
    return ratios


def prefill_speed(
    profile: EngineProfile,
    crowded: Sequence[Sequence[Sample]],
    slowdown: Sequence[float] = (),
    *,
    step_s: float = 0.001,
) -> tuple[float | None, int]:
    """The engine's prefill now over the fit's, from the requests of ``crowded`` rounds
    that waited behind another on their replica (see the module docstring), and how many
    there were; ``(None, 0)`` when none did.

    Args:
        profile: Its fit is the reference.
        crowded: Rounds of requests sent at once.
        slowdown: ``host_slowdown`` of the machine the round's replicas share (empty: a
            machine each, no correction).
        step_s: Integration step over each prefill (s).
    """
    ratios = [r for rnd in crowded for r in waited(profile, rnd, slowdown, step_s)]
    return (float(np.median(ratios)), len(ratios)) if ratios else (None, 0)


def _replica_key(s: Sample) -> str:
    return s.replica or f"#{id(s)}"  # unnamed: a replica each


class Timeline:
    """When each replica of one machine had a request in flight (sent, last token not
    yet), built once from the machine's requests: each replica's flights merged into
    disjoint intervals, so a busy count costs a binary search per replica and instant (a
    day of a fleet's ledger is read in seconds, not in the hours of a scan of every
    request for each one). An unnamed replica counts as one of its own."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        flights: dict[str, list[tuple[float, float]]] = {}
        for o in samples:
            flights.setdefault(_replica_key(o), []).append((o.sent_s, o.last_s))
        self._spans: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key, spans in flights.items():
            merged: list[list[float]] = []
            for start, end in sorted(spans):
                if end <= start:
                    continue
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            if merged:
                arr = np.asarray(merged, dtype=np.float64)
                self._spans[key] = (arr[:, 0], arr[:, 1])

    def busy(self, s: Sample, t: np.ndarray) -> np.ndarray:
        """How many replicas of the machine were busy at each time of ``t`` (s): ``s``'s own
        and every other replica with a request in flight."""
        own = _replica_key(s)
        count = np.ones(t.shape, np.int64)
        for key, (starts, ends) in self._spans.items():
            if key != own:
                i = np.searchsorted(starts, t, side="right") - 1
                count += (i >= 0) & (t < ends[np.maximum(i, 0)])
        return count


def instants(start_s: float, end_s: float, step_s: float) -> np.ndarray:
    """The midpoints of ``round((end_s - start_s) / step_s)`` steps of ``step_s`` from
    ``start_s`` (s): a whole number of steps, so a span far from the clock's zero does not
    gain a step from rounding (``np.arange(100.0, 100.132, 0.001)`` has 133 points)."""
    n = max(0, round((end_s - start_s) / step_s))
    return start_s + (np.arange(n) + 0.5) * step_s


def queued(samples: Sequence[Sample]) -> list[bool]:
    """Per request of ``samples``, whether it was sent while another of its replica (the
    same ``replica`` string) was in flight: sent at or before it, last token after its
    send. Sorted per replica, ties of send time compared with each other."""
    out = [False] * len(samples)
    by_replica: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_replica.setdefault(s.replica, []).append(i)
    for idx in by_replica.values():
        idx.sort(key=lambda i: samples[i].sent_s)
        before = -math.inf  # latest last token of those sent strictly earlier
        k = 0
        while k < len(idx):
            sent = samples[idx[k]].sent_s
            j = k
            while j < len(idx) and samples[idx[j]].sent_s == sent:
                j += 1
            tie = idx[k:j]
            for i in tie:
                alongside = max((samples[o].last_s for o in tie if o != i), default=-math.inf)
                out[i] = max(before, alongside) > sent
            before = max(before, *(samples[i].last_s for i in tie))
            k = j
    return out


def work_ms(
    s: Sample,
    start_s: float,
    end_s: float,
    machine: Timeline,
    slowdown: Sequence[float],
    step_s: float = 0.001,
) -> float:
    """The engine work (ms at full speed) ``s``'s replica did from ``start_s`` to ``end_s``:
    each ms counted at ``1 / slowdown[k - 1]`` while ``k`` replicas (``machine.busy``) were
    busy on the machine, ``k`` capped at ``len(slowdown)``; empty ``slowdown``: the time itself
    (a machine per replica). Integrated in steps of ``step_s``."""
    if end_s <= start_s:
        return 0.0
    if not slowdown:
        return (end_s - start_s) * 1000
    k = machine.busy(s, instants(start_s, end_s, step_s))
    table = np.asarray(slowdown, dtype=np.float64)
    rate = 1.0 / table[np.minimum(k, len(table)) - 1]
    return float(rate.sum()) * step_s * 1000


def waited(
    profile: EngineProfile,
    samples: Sequence[Sample],
    slowdown: Sequence[float] | None = None,
    step_s: float = 0.001,
) -> list[float]:
    """For each request of ``samples`` (one machine) that waited behind another on its
    (named) replica — sent before that one's last token, its own first token after it — its
    prefill work (``work_ms`` from the latest such last token to its first token, at
    ``slowdown``; ``None``: the profile's ``host_slowdown``) over the fitted prefill: the
    engine's prefill apart from the serving path, whose HTTP hops, template and routing ran
    while it waited (step 2 above; ``recalibration.path_overhead`` on the ledger's
    traffic). A fit of 0 ms at a length says nothing of the speed: skipped."""
    table = profile.host_slowdown if slowdown is None else slowdown
    machine = Timeline(samples)
    lasts: dict[str, list[tuple[float, int]]] = {}
    for i, s in enumerate(samples):
        lasts.setdefault(s.replica, []).append((s.last_s, i))
    ends = {rep: (np.array([t for t, _ in v]), [i for _, i in v])
            for rep, v in ((rep, sorted(v)) for rep, v in lasts.items())}  # fmt: skip
    out = []
    for i, s in enumerate(samples):
        if not s.replica:
            continue
        times, order = ends[s.replica]
        j = int(np.searchsorted(times, s.first_s, side="right")) - 1
        while j >= 0 and order[j] == i:
            j -= 1  # not itself
        if j < 0 or times[j] <= s.sent_s:
            continue
        fitted = float(profile.prefill_ms(max(1, s.prompt_tokens)))
        if fitted > 0:
            out.append(work_ms(s, float(times[j]), s.first_s, machine, table, step_s) / fitted)
    return out


@dataclass(frozen=True, slots=True)
class Speed:
    """The engine's speed in a run over its profile's fit (dimensionless medians; ``None``
    where no request qualified) and how many requests each came from."""

    prefill: float | None
    decode: float | None
    prefill_requests: int
    decode_requests: int


Ratios = tuple[list[tuple[float, float]], list[tuple[float, float]]]
"""One machine's ``speed_ratios``: (prefill, decode), each a list of ``(sent_s, ratio)``."""


def speed_ratios(profile: EngineProfile, samples: Sequence[Sample]) -> Ratios:
    """Each request's prefill and decode work over the profile's fit (``speed_in_run``'s
    samples, before the medians), with its send time: ``(prefill, decode)``, each a list of
    ``(sent_s, ratio)``; every request of ``samples`` on one machine."""
    decode, prefill = [], []
    slowdown = profile.host_slowdown
    machine = Timeline(samples)
    for s, waited in zip(samples, queued(samples), strict=True):
        if s.output_tokens > 1:
            fitted = (s.output_tokens - 1) * float(
                profile.decode_ms(s.prompt_tokens, s.output_tokens)
            )
            if fitted > 0:
                work = work_ms(s, s.first_s, s.last_s, machine, slowdown)
                decode.append((s.sent_s, work / fitted))
        fitted = float(profile.prefill_ms(max(1, s.prompt_tokens)))
        if not waited and fitted > 0:
            start_s = s.sent_s + profile.overhead_ms / 1000
            work = work_ms(s, start_s, s.first_s, machine, slowdown)
            prefill.append((s.sent_s, work / fitted))
    return prefill, decode


def speed_in_run(
    profile: EngineProfile, samples: Sequence[Sample], *more_machines: Sequence[Sample]
) -> Speed:
    """The engine's prefill and decode speed during a run over the profile's fit, read
    from the run's own requests: the median over requests of the engine work each did
    (``work_ms``: its time, each ms counted at ``1 / host_slowdown[k - 1]`` while ``k``
    replicas of the machine were busy, so a request that shared the cores is not read as a
    slower engine) over the fitted time. Decode: every request of two tokens or more, first
    to last token, over (tokens - 1) x the fitted step. Prefill: the requests that found no
    other in flight on their replica when sent, from send + ``overhead_ms`` to the first
    token, over the fitted prefill (a request that waited behind another says nothing of
    its own prefill).

    Args:
        profile: The profile whose fits the speeds are relative to (its ``overhead_ms``
            and ``host_slowdown`` are used as they are).
        samples: The run's requests on one machine, each naming its replica.
        more_machines: Requests of other machines (each its own sequence): the medians are
            over the requests of all.
    """
    return median_speed([speed_ratios(profile, m) for m in (samples, *more_machines)])


def median_speed(ratios: Sequence[Ratios]) -> Speed:
    """``speed_in_run``'s medians over machines' ``speed_ratios``."""
    prefill = [r for p, _ in ratios for _, r in p]
    decode = [r for _, d in ratios for _, r in d]
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


SPREAD_POINTS = 100
"""Most values a spread read from traffic keeps (``spread_of``): a day of a fleet's ledger
holds a ratio per request, the simulator draws from the spread with equal weights."""
MIN_SPREAD = 10
"""Fewest requests for a spread read from traffic (``in_traffic``); fewer: the calibrated
spread re-centred on their median (``at_speed``)."""


def spread_of(ratios: Sequence[float], points: int = SPREAD_POINTS) -> tuple[float, ...]:
    """``ratios`` (positive ones) sorted and rounded to 4 digits; more than ``points``: their
    quantiles at ``(i + 0.5) / points``, ``i`` = 0 .. ``points`` - 1 (equal weights, as the
    simulator draws)."""
    values = np.sort(np.asarray([r for r in ratios if r > 0], dtype=np.float64))
    if values.size > points:
        values = np.quantile(values, (np.arange(points) + 0.5) / points)
    return tuple(round(float(x), 4) for x in values)


def in_traffic(profile: EngineProfile, ratios: Sequence[Ratios]) -> EngineProfile:
    """``profile`` with its prefill and decode spreads read from traffic: each the
    requests' own work over the fit (machines' ``speed_ratios``, ``spread_of``) where at
    least ``MIN_SPREAD`` requests give one, otherwise the calibrated spread re-centred on
    their median (``at_speed``; none: as it is).

    The calibration's spreads come from ~30 idle requests over a few minutes, whose speed
    on a shared machine wanders by ±10-15 % (bench/RESULTS.md): their shape is that
    wander, not the traffic's. Validation run 29 (bench/RESULTS.md) re-predicted its
    levels with the spreads read from the window instead of re-centred: within the goals
    38 -> 39 of 45 (ledger), 34 -> 39 (history), 43 -> 45 (the level's own requests)."""
    out = at_speed(profile, median_speed(ratios))
    prefill = [r for p, _ in ratios for _, r in p]
    decode = [r for _, d in ratios for _, r in d]
    update: dict[str, tuple[float, ...]] = {}
    if len(prefill) >= MIN_SPREAD and (spread := spread_of(prefill)):
        update["prefill_spread"] = spread
    if len(decode) >= MIN_SPREAD and (spread := spread_of(decode)):
        update["decode_spread"] = spread
    return out.model_copy(update=update)


def spreads_read(prefill_requests: int, decode_requests: int) -> str:
    """How ``in_traffic`` set the spreads from that many requests, as a phrase for a
    report: read from the requests where at least ``MIN_SPREAD`` gave one, re-centred
    otherwise."""
    read = [n >= MIN_SPREAD for n in (prefill_requests, decode_requests)]
    if all(read):
        return "spreads read from the requests"
    if not any(read):
        return f"spreads re-centred (fewer than {MIN_SPREAD} requests to read them from)"
    first, second = ("prefill", "decode") if read[1] else ("decode", "prefill")
    return (
        f"{first} spread re-centred (fewer than {MIN_SPREAD} requests), {second} spread read "
        "from the requests"
    )


__all__ = [
    "CalibrationRun",
    "Probe",
    "Ratios",
    "Sample",
    "Speed",
    "Timeline",
    "apply",
    "at_speed",
    "counting_prompt",
    "host_slowdown",
    "in_traffic",
    "instants",
    "measure",
    "median_speed",
    "prefill_speed",
    "queued",
    "rounds_at_once",
    "service_ratio",
    "signed_rank_p",
    "slowdown_p",
    "slowdown_ratios",
    "speed_in_run",
    "speed_ratios",
    "spread_of",
    "spreads_read",
    "waited",
    "work_ms",
]
