"""A profile re-read from the fleet's own traffic: the engine's speed over the profile's
fit, and its spread from request to request, read from the requests the usage ledger holds
(``tenancy.timings``), without an idle fleet or a single probe request.

``modelgrid plan calibrate`` measures a fleet at rest; the engine's speed moves after that
(other jobs on the machine, thermal limits, a new build), and a prediction made with the
old speed inherits the difference, multiplied by ~1/(1 - utilisation) in the queue's waits.
The ledger has, for every request, when it arrived, its times to the first and the last
output token, its uncached prompt and output tokens and the replica that served it: what
``calibration.speed_in_run`` reads (decode from every request's time per output token,
prefill from the requests that found their replica idle, each with ``host_slowdown`` taken
off while other replicas of its machine were busy), the machine's sharing
(``contention``) and the serving path's overhead (``path_overhead``, from the requests that
waited behind another). Which replicas share a machine is the
simulator's own packing (``sim``): a deployment's replicas in the topology's order,
``replicas_per_host`` to a machine.

The ledger's times are the gateway's: from its receipt of the request to its receipt of the
first and the last token from the replica, where ``calibrate``'s are the client's (send to
the first and the last content chunk). The first token reaches a client on the same machine
~4 ms after the gateway has it (validation run 21: medians 3.3-3.8 ms a level), so prefill
reads ~4 ms short, 0.4 % of a 900 ms TTFT. The request's end (``total_ms``) is no measure of
decode: llama-cpp-python evaluates the last token before it stops, a step (~30 ms) after
the client has it, which read as decode 8 % slower than the client saw (run 21).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelgrid.core.errors import PlanInputError
from modelgrid.planner.calibration import (
    Ratios,
    Sample,
    Speed,
    Timeline,
    in_traffic,
    instants,
    median_speed,
    queued,
    speed_ratios,
    waited,
    work_ms,
)
from modelgrid.planner.profile import EngineProfile
from modelgrid.routing.topology import Topology
from modelgrid.tenancy.timings import Served

MIN_REQUESTS = 20
"""Fewest requests of two tokens or more (decode) for a speed: the median of 20 moves
~2 % with the spread of ``calibrate``'s idle requests (0.92-1.13)."""


SLICE_S = 300.0
"""The window is also read in slices of this many seconds (``slices``): how far the speed
moved within it."""
MIN_SLICE_REQUESTS = 10
"""Fewest decodes for a slice's decode speed (and idle-replica requests for its prefill)."""
MIN_WAITED = 10
"""Fewest requests that waited behind another on their replica for the ledger to re-read
the serving path's overhead (``path_overhead``); the calibration's default rounds."""
MIN_AT_BUSY = 10.0
"""Fewest request-equivalents of decode time (each request's share of its decode spent at
``k`` busy, summed) for the ledger to read ``host_slowdown[k - 1]``; below it the
calibrated value is kept."""


@dataclass(frozen=True, slots=True)
class Contention:
    """The machine's sharing as the ledger read it.

    Attributes:
        slowdown: ``host_slowdown`` (``(1, s_2, ...)``, dimensionless; the calibrated value
            where too little time was spent at that many busy).
        at_busy: Request-equivalents of decode time at 1, 2, ... busy replicas.
        read: Which of ``slowdown`` the ledger read (the others are the calibration's).
    """

    slowdown: tuple[float, ...]
    at_busy: tuple[float, ...]
    read: tuple[bool, ...]


def least_absolute(x: np.ndarray, y: np.ndarray, iterations: int = 100) -> np.ndarray:
    """``a`` minimising ``sum |y - x a|`` (``x``: n x p, ``y``: n), by iteratively
    reweighted least squares (weights ``1 / max(|residual|, 1e-6)``; Schlossmacher,
    *JASA* 68 (1973) 857-859)."""
    a: np.ndarray = np.linalg.lstsq(x, y, rcond=None)[0]
    for _ in range(iterations):
        w = 1.0 / np.sqrt(np.maximum(np.abs(y - x @ a), 1e-6))
        nxt: np.ndarray = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)[0]
        if np.allclose(nxt, a, rtol=1e-7, atol=0.0):
            return nxt
        a = nxt
    return a


def contention(
    profile: EngineProfile, *groups: Sequence[Sample], step_s: float = 0.001
) -> Contention:
    """``profile.host_slowdown`` re-read from the decodes of ``groups`` (each the requests
    of one machine; see the module docstring). ``k`` counts busy replicas up to
    ``len(profile.host_slowdown)``; ``s_k`` is read where the requests spent at least
    ``MIN_AT_BUSY`` request-equivalents at ``k`` busy (and at 1), kept from the profile
    otherwise (tied to ``a_1`` by its calibrated ratio), and never below ``s_(k-1)`` (more
    busy replicas never make one faster). A profile without a table (a machine per
    replica) or of one entry is returned as it is."""
    table = profile.host_slowdown
    if len(table) < 2:
        return Contention(table, (), tuple(False for _ in table))
    rows, weights = [], []
    for group in groups:
        machine = Timeline(group)
        for s in group:
            fitted_ms = (s.output_tokens - 1) * float(
                profile.decode_ms(s.prompt_tokens, s.output_tokens)
            )
            if s.output_tokens < 2 or fitted_ms <= 0 or s.last_s <= s.first_s:
                continue
            k = np.minimum(machine.busy(s, instants(s.first_s, s.last_s, step_s)), len(table))
            at_k = np.bincount(k - 1, minlength=len(table)) * step_s * 1000
            rows.append(at_k / fitted_ms)
            weights.append(at_k / max(at_k.sum(), 1e-9))
    at_busy = tuple(float(w) for w in np.sum(weights, axis=0)) if rows else (0.0,) * len(table)
    read = [w >= MIN_AT_BUSY for w in at_busy]
    if not read[0] or not any(read[1:]):
        return Contention(table, at_busy, tuple(False for _ in table))
    x = np.asarray(rows)
    free = [k for k in range(len(table)) if read[k]]
    design = x[:, free].copy()
    for k in range(len(table)):
        if not read[k]:  # a_k = a_1 / s_k (calibrated): its time counts on a_1's column
            design[:, 0] += x[:, k] / table[k]
    a = least_absolute(design, np.ones(len(rows)))
    if np.any(a <= 0):
        return Contention(table, at_busy, tuple(False for _ in table))
    out = [1.0]
    for k in range(1, len(table)):
        s_k = float(a[0] / a[free.index(k)]) if read[k] else table[k]
        out.append(round(max(s_k, out[-1]), 4))
    return Contention(tuple(out), at_busy, tuple(read))


@dataclass(frozen=True, slots=True)
class PathRead:
    """``path_overhead``'s result: the profile, how many requests waited behind another,
    and the median residual before it was floored at 0 (ms; ``None``: not re-read)."""

    profile: EngineProfile
    waited: int
    residual_ms: float | None = None


def path_overhead(
    profile: EngineProfile, *groups: Sequence[Sample], minimum: int = MIN_WAITED
) -> PathRead:
    """``profile`` with ``overhead_ms`` re-read from ``groups`` (each the requests of one
    machine) where at least ``minimum`` requests waited behind another (``waited``); fewer:
    ``profile`` as it is.

    The calibration splits an idle request's TTFT into the serving path (added before the
    replica's queue, hidden by a wait) and the engine's prefill (busy time, adding to every
    wait behind it) by ~10 queued rounds; validation run 26 read those rounds' prefill at
    0.851 of the fit where the next ~100 queued requests of the traffic ran at 1.03-1.07,
    so 177 ms of busy time stood as path and the queue's waits were under-predicted
    (TTFT p95 -37 % at 0.65 utilisation). Here: the engine's prefill speed ``q`` = median
    of ``waited``; overhead = max(0, median over the requests that found their replica
    idle of (TTFT - ``q`` x fitted prefill x the machine's mean slowdown over that TTFT)),
    as ``profile.calibrate`` does with the rounds' speed. Only for an engine that runs one
    sequence at a time (``slots`` 1): a batching engine starts a request beside the others,
    and a first token after another's last says nothing of its prefill."""
    if profile.slots != 1:
        return PathRead(profile, 0)
    ratios = [r for g in groups for r in waited(profile, g)]
    if len(ratios) < minimum:
        return PathRead(profile, len(ratios))
    q = float(np.median(ratios))
    residuals = []
    for group in groups:
        machine = Timeline(group)
        for s, was in zip(group, queued(group), strict=True):
            elapsed = (s.first_s - s.sent_s) * 1000
            work = work_ms(s, s.sent_s, s.first_s, machine, profile.host_slowdown)
            if not was and work > 0:
                fitted = float(profile.prefill_ms(max(1, s.prompt_tokens)))
                residuals.append(elapsed - q * fitted * elapsed / work)
    if not residuals:
        return PathRead(profile, len(ratios))
    residual = float(np.median(residuals))
    overhead = round(max(0.0, residual), 1)
    return PathRead(profile.model_copy(update={"overhead_ms": overhead}), len(ratios), residual)


def slices(ratios: Sequence[Ratios], slice_s: float = SLICE_S) -> tuple[Speed, ...]:
    """The engine's speed over the profile's fit in each ``slice_s`` of the window (by send
    time, on the machines' one clock), in order: the medians of ``ratios`` (each machine's
    ``speed_ratios``, busy counts over the whole window) of the requests sent in it; only
    slices with at least ``MIN_SLICE_REQUESTS`` decodes, and a prefill only from as many
    that found their replica idle (``None`` otherwise). Each is a time over the fit: above
    1 is slower. Validation runs 23-25 (bench/RESULTS.md): the engine's speed on a shared
    2-vCPU VM moved by up to ±15 % from one 2-5 minute level to the next, and a plan made at
    one speed holds only as long as it does."""
    prefill: dict[int, list[float]] = defaultdict(list)
    decode: dict[int, list[float]] = defaultdict(list)
    for p, d in ratios:
        for sent_s, r in p:
            prefill[int(sent_s // slice_s)].append(r)
        for sent_s, r in d:
            decode[int(sent_s // slice_s)].append(r)
    out = []
    for k in sorted(decode):
        if len(decode[k]) >= MIN_SLICE_REQUESTS:
            pre = prefill.get(k, [])
            mid = float(np.median(pre)) if len(pre) >= MIN_SLICE_REQUESTS else None
            out.append(Speed(mid, float(np.median(decode[k])), len(pre), len(decode[k])))
    return tuple(out)


def samples(served: Sequence[Served]) -> list[Sample]:
    """The ledger's requests as ``Sample``s on one clock (seconds since the first
    arrival)."""
    if not served:
        return []
    t0 = served[0].arrived_at
    out = []
    for s in served:
        sent = (s.arrived_at - t0).total_seconds()
        first, last = sent + s.ttft_ms / 1000, sent + s.last_token_ms / 1000
        out.append(Sample(sent, first, last, s.prompt_tokens, s.output_tokens, s.replica))
    return out


def machines(
    topology: Topology, model: str, replicas_per_host: int, requests: Sequence[Sample]
) -> list[list[Sample]]:
    """``requests`` grouped by the machine their replica shares with others: each
    deployment of ``model``'s replicas in order, ``replicas_per_host`` to a machine (as
    ``sim`` packs them); a replica the topology does not name is a machine of its own."""
    machine_of: dict[str, str] = {}
    for d in topology.deployments:
        if d.model == model:
            for k, r in enumerate(d.replicas):
                machine_of[r.id] = f"{d.region}#{k // replicas_per_host}"
    groups: dict[str, list[Sample]] = {}
    for s in requests:
        groups.setdefault(machine_of.get(s.replica, f"replica:{s.replica}"), []).append(s)
    return list(groups.values())


@dataclass(frozen=True, slots=True)
class Recalibrated:
    """``recalibrate``'s result: the profile, the engine's speed over its fit (net of
    ``contention.slowdown``), the machine's sharing as read, the speed in each slice of
    the window (``slices``) and the serving path's overhead as read (``path``)."""

    profile: EngineProfile
    speed: Speed
    contention: Contention
    slices: tuple[Speed, ...] = ()
    path: PathRead | None = None


def recalibrate(
    profile: EngineProfile, served: Sequence[Served], topology: Topology, *, window: str = ""
) -> Recalibrated:
    """``profile`` with its ``host_slowdown`` re-read from ``served`` (``contention``), then
    its ``overhead_ms`` (``path_overhead``, where enough requests waited), and its prefill
    and decode spreads read from the requests' own speeds (``calibration.in_traffic``: the
    ratios themselves where ``MIN_SPREAD`` or more give one, else the calibrated spread
    re-centred on their median). The table and the overhead start
    from the calibration's values (``EngineProfile.as_calibrated``), not from an earlier
    recalibration's, so the result depends on the window alone.

    ``window`` (e.g. ``from … to …``) names the requests' window in the error.

    Raises:
        PlanInputError: fewer than ``MIN_REQUESTS`` requests of two tokens or more, or not
            one that found its replica idle (no prefill to read).
    """
    profile = profile.as_calibrated()
    groups = machines(topology, profile.model, profile.replicas_per_host, samples(served))
    shared = contention(profile, *groups)
    path = path_overhead(profile.model_copy(update={"host_slowdown": shared.slowdown}), *groups)
    profile = path.profile
    ratios = [speed_ratios(profile, g) for g in groups]
    speed = median_speed(ratios)
    if speed.decode_requests < MIN_REQUESTS or speed.prefill is None:
        raise PlanInputError(
            f"the ledger holds {len(served)} served requests of {profile.model} "
            f"{window or 'in the window'}, "
            f"{speed.decode_requests} of two tokens or more and {speed.prefill_requests} that "
            f"found their replica idle; it needs {MIN_REQUESTS} of two tokens or more (the "
            "decode speed) and one that found its replica idle (the prefill speed)",
            param="--since",
        )
    return Recalibrated(in_traffic(profile, ratios), speed, shared, slices(ratios), path)


__all__ = [
    "MIN_AT_BUSY",
    "MIN_REQUESTS",
    "MIN_SLICE_REQUESTS",
    "MIN_WAITED",
    "SLICE_S",
    "Contention",
    "PathRead",
    "Recalibrated",
    "contention",
    "least_absolute",
    "machines",
    "path_overhead",
    "recalibrate",
    "samples",
    "slices",
]
