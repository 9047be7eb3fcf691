"""A discrete-event simulation of the fleet, driven by a simulated clock, that routes with the
product's own code.

Each request of a ``Stream`` (its origin region's gateway, workspace, model, residency) is
routed when it arrives by the gateway's real ``routing.Router`` — residency through
``RoutingHints.allows``, regions by ``policies.rank_regions`` over the ``Topology``'s
latency from the origin, the replica by the configured policy (``policies.POLICIES``) — with
a ``HealthBook`` on the simulated clock, kept up to date the way the gateway keeps it:
``Router.begin`` when a request is sent, ``Router.end`` when its last token is back, and a
probe every ``probe_interval_s`` that sets each replica's reported queue depth. A gateway
per origin region (the topology with that ``gateway_region``), all sharing one view of the
replicas' load.

A replica is ``slots`` servers (llama.cpp: one) in front of a FIFO queue. A request reaches
it after the gateway's overhead and half the round trip from its origin, waits, is served —
prefill, then one token per decode step, from its model's ``EngineProfile`` — and each token
takes the other half of the round trip back. So, for a request arriving at ``t``:

    TTFT = overhead + RTT/2 + wait + prefill + RTT/2,   time per output token = decode step

where overhead is the gateway's (``SimConfig.gateway_overhead_ms``) plus the profile's
calibrated serving path (``EngineProfile.overhead_ms``), and each request's prefill and
decode step are the profile's fits times a factor drawn from the profile's measured
``prefill_spread`` and ``decode_spread`` (one draw per request and phase, from a generator
seeded by ``SimConfig.seed`` and the stream's index: the same run gives the same figures;
no spread: factor 1). Replicas that share one machine share its cores over time: a
profile with a measured ``host_slowdown`` (``EngineProfile``; ``modelgrid plan calibrate``)
packs each deployment's replicas ``replicas_per_host`` to a machine, in the topology's
order, and while ``k`` replicas of a machine are busy each request in service there
advances at ``1 / host_slowdown[k - 1]`` of its own speed (processor sharing), so its first
token and its end move whenever another replica of that machine starts or finishes; its
time per output token is then the mean step it got.

Requests are recorded when they finish; those that arrived before ``warmup_s`` are dropped
from the figures (the fleet starts empty). Plain Python (heapq) and numpy.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from modelgrid.config import RoutingSettings
from modelgrid.core.errors import ModelgridError
from modelgrid.core.types import RoutingHints
from modelgrid.planner.profile import EngineProfile
from modelgrid.routing.health import HealthBook
from modelgrid.routing.router import Outcome, Placement, Router
from modelgrid.routing.topology import Topology

_ARRIVE, _ENQUEUE, _FINISH, _GW_END, _PROBE, _JOB_END = range(6)


@dataclass(frozen=True, slots=True)
class Stream:
    """The requests of one workspace at one origin for one model (arrays of equal length).

    Attributes:
        origin: Region whose gateway receives them.
        model / workspace: What they ask for and whose they are.
        hints: Their residency (``RoutingHints``).
        arrivals_s: Arrival times, sorted (s).
        prompt_tokens / output_tokens: Each request's lengths (prompt tokens not in the
            replica's prefix cache).
    """

    origin: str
    model: str
    workspace: str
    hints: RoutingHints
    arrivals_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Attributes: policy: replica policy; gateway_overhead_ms: added per request (on top
    of the profile's ``overhead_ms``); probe_interval_s: the gateway's probe period
    (``None``: no probes); seed: the router's randomness and the spread draws; warmup_s:
    arrivals before this are not counted; max_imbalance: as ``RoutingSettings``. How
    replicas share machines comes from each profile's ``host_slowdown``."""

    policy: str = "cache_aware"
    gateway_overhead_ms: float = 1.0
    probe_interval_s: float | None = 0.5
    seed: int = 0
    warmup_s: float = 0.0
    max_imbalance: int = 2


@dataclass(slots=True)
class Served:
    """One request as the simulation saw it (times in the client's view)."""

    stream: int
    region: str
    replica: str
    arrival_s: float
    wait_ms: float
    ttft_ms: float
    tpot_ms: float
    done_s: float
    output_tokens: int


@dataclass(slots=True)
class _Request:
    stream: int
    index: int
    arrival_s: float
    placement: Placement
    rtt_s: float
    queued_s: float = 0.0


@dataclass(slots=True)
class _Host:
    """A machine whose replicas share its cores (``EngineProfile.host_slowdown``)."""

    slowdown: tuple[float, ...]
    busy: int = 0  # replicas serving at least one request
    jobs: list[_Job] = field(default_factory=list)

    def rate(self) -> float:
        """Speed of each request in service now (1: a replica alone)."""
        if not self.busy:
            return 1.0
        return 1.0 / self.slowdown[min(self.busy, len(self.slowdown)) - 1]


@dataclass(slots=True)
class _Job:
    """A request in service on a shared machine; work in seconds of the replica's own
    speed."""

    rep: _Replica
    req: _Request
    started_s: float
    prefill_s: float
    total_s: float
    output_tokens: int
    done_s: float = 0.0  # work done by at_s
    at_s: float = 0.0
    first_s: float | None = None  # when the prefill's work was done
    version: int = 0


@dataclass(slots=True)
class _Replica:
    id: str
    model: str
    region: str
    profile: EngineProfile
    slots: int
    host: _Host | None = None  # None: a machine of its own
    busy: int = 0
    busy_s: float = 0.0
    queue: deque[_Request] = field(default_factory=deque)


@dataclass
class SimResult:
    """What a simulation produced.

    Attributes:
        streams: The simulated streams (indexes of ``Served.stream``).
        served: Counted requests, in order of completion.
        rejected: ``(stream, arrival_s, reason)`` of requests the router refused.
        busy_s: Busy time of each replica within the counted window.
        replicas: ``(model, region)`` of each replica id.
        window_s: ``(start, end)`` of the counted window.
    """

    streams: Sequence[Stream]
    served: list[Served]
    rejected: list[tuple[int, float, str]]
    busy_s: dict[str, float]
    replicas: dict[str, tuple[str, str]]
    window_s: tuple[float, float]

    def select(
        self, *, origin: str | None = None, model: str | None = None, region: str | None = None
    ) -> list[Served]:
        return [
            s
            for s in self.served
            if (origin is None or self.streams[s.stream].origin == origin)
            and (model is None or self.streams[s.stream].model == model)
            and (region is None or s.region == region)
        ]

    def utilisation(self) -> dict[str, float]:
        """Busy share of each replica over the counted window."""
        span = max(self.window_s[1] - self.window_s[0], 1e-9)
        return {rid: min(1.0, b / span) for rid, b in self.busy_s.items()}

    def throughput_rps(self) -> float:
        span = max(self.window_s[1] - self.window_s[0], 1e-9)
        return sum(1 for s in self.served if s.done_s <= self.window_s[1]) / span


def _factors(rng: np.random.Generator, spread: Sequence[float], s: Stream) -> np.ndarray:
    """One factor per request of ``s`` drawn from ``spread`` (all 1 when it is empty)."""
    n = len(s.arrivals_s)
    if not spread:
        return np.ones(n)
    return rng.choice(np.asarray(spread, dtype=np.float64), size=n)


def _replicas(topology: Topology, profiles: Mapping[str, EngineProfile]) -> dict[str, _Replica]:
    """The simulated replicas of ``topology``'s deployments of profiled models; those of a
    profile with a ``host_slowdown`` packed ``replicas_per_host`` to a ``_Host``, in order."""
    out: dict[str, _Replica] = {}
    for d in topology.deployments:
        p = profiles.get(d.model)
        if p is None:
            continue
        host: _Host | None = None
        for k, r in enumerate(d.replicas):
            if p.host_slowdown and k % p.replicas_per_host == 0:
                host = _Host(p.host_slowdown)
            out[r.id] = _Replica(r.id, d.model, d.region, p, p.slots, host)
    return out


def quantile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q`` quantile (linear interpolation); ``nan`` when empty."""
    arr = np.asarray(values, dtype=np.float64)
    return float(np.quantile(arr, q)) if arr.size else float("nan")


def simulate(
    topology: Topology,
    streams: Sequence[Stream],
    profiles: Mapping[str, EngineProfile],
    config: SimConfig = SimConfig(),  # frozen: a safe default
) -> SimResult:
    """Run ``streams`` through the fleet ``topology`` describes (see the module docstring).

    Args:
        topology: Regions, latency and deployments (each replica one server of its model's
            profile; ``max_concurrency`` counts for saturation as in the gateway).
        streams: The requests.
        profiles: Engine profile per model.
        config: Policy, overheads, seed, warm-up.
    """
    now = [0.0]
    book = HealthBook(clock=lambda: now[0])
    settings = RoutingSettings(policy=config.policy, max_imbalance=config.max_imbalance)  # type: ignore[arg-type]
    routers: dict[str, Router] = {}
    for k, origin in enumerate(sorted({s.origin for s in streams})):
        view = dataclasses.replace(topology, gateway_region=origin)
        routers[origin] = Router(
            view, config=settings, health=book, rng=random.Random(config.seed * 7919 + k)
        )
    replicas = _replicas(topology, profiles)
    # Per request: prefill and decode step (ms) at batch 1 times its drawn spread factors,
    # computed once per stream (the draws do not depend on the order of events).
    prefill, decode = [], []
    for i, s in enumerate(streams):
        p = profiles[s.model]
        rng = np.random.default_rng([config.seed, i])
        prefill.append(p.prefill_ms(s.prompt_tokens) * _factors(rng, p.prefill_spread, s))
        decode.append(
            p.decode_ms(s.prompt_tokens, s.output_tokens) * _factors(rng, p.decode_spread, s)
        )
    heap: list[tuple[float, int, int, object]] = []
    seq = 0
    for i, s in enumerate(streams):
        for j, t in enumerate(s.arrivals_s.tolist()):
            heap.append((t, seq, _ARRIVE, (i, j)))
            seq += 1
    heapq.heapify(heap)
    end = max((float(s.arrivals_s[-1]) for s in streams if len(s.arrivals_s)), default=0.0)
    if config.probe_interval_s and replicas:
        heapq.heappush(heap, (config.probe_interval_s, -1, _PROBE, None))
    overhead_s = [
        (config.gateway_overhead_ms + profiles[s.model].overhead_ms) / 1000 for s in streams
    ]

    def advance(host: _Host, t: float) -> None:
        """Bring the work of every job on ``host`` up to ``t`` at its current rate."""
        r = host.rate()
        for job in host.jobs:
            work = (t - job.at_s) * r
            if job.first_s is None and job.done_s + work >= job.prefill_s:
                job.first_s = job.at_s + (job.prefill_s - job.done_s) / r
            job.done_s, job.at_s = job.done_s + work, t

    def reschedule(host: _Host, t: float) -> None:
        nonlocal seq
        r = host.rate()
        for job in host.jobs:
            job.version += 1
            finish = t + max(job.total_s - job.done_s, 0.0) / r
            heapq.heappush(heap, (finish, seq, _JOB_END, (job, job.version)))
            seq += 1

    served: list[Served] = []
    rejected: list[tuple[int, float, str]] = []
    busy = dict.fromkeys(replicas, 0.0)
    start_window = config.warmup_s

    def start(rep: _Replica, req: _Request, t: float) -> None:
        nonlocal seq
        host = rep.host
        if host is not None:
            advance(host, t)  # at the rate before this one starts
            if rep.busy == 0:
                host.busy += 1
        rep.busy += 1
        s = streams[req.stream]
        p_ms = float(prefill[req.stream][req.index])
        d_ms = float(decode[req.stream][req.index])
        if rep.slots > 1 and rep.busy > 1:
            d_ms *= rep.profile.decode_scale.get(rep.busy, 1.0)
        n_out = int(s.output_tokens[req.index])
        service_s = (p_ms + max(n_out - 1, 0) * d_ms) / 1000
        if host is not None:
            host.jobs.append(_Job(rep, req, t, p_ms / 1000, service_s, n_out, at_s=t))
            reschedule(host, t)
            return
        finish = t + service_s
        # busy time inside the counted window [warmup, end of arrivals]
        lo, hi = max(t, start_window), min(finish, end)
        if hi > lo:
            busy[rep.id] += hi - lo
        if req.arrival_s >= start_window:
            half = req.rtt_s / 2
            served.append(
                Served(
                    stream=req.stream,
                    region=rep.region,
                    replica=rep.id,
                    arrival_s=req.arrival_s,
                    wait_ms=(t - req.queued_s) * 1000,
                    ttft_ms=(t + p_ms / 1000 + half - req.arrival_s) * 1000,
                    tpot_ms=d_ms if n_out > 1 else 0.0,
                    done_s=finish + half,
                    output_tokens=n_out,
                )
            )
        heapq.heappush(heap, (finish, seq, _FINISH, (rep, req)))
        seq += 1

    def job_end(job: _Job, t: float) -> None:
        """Record a job done at ``t`` (``advance`` already ran)."""
        assert job.rep.host is not None
        job.rep.host.jobs.remove(job)
        req, first = job.req, job.first_s if job.first_s is not None else t
        lo, hi = max(job.started_s, start_window), min(t, end)
        if hi > lo:
            busy[job.rep.id] += hi - lo
        if req.arrival_s >= start_window:
            half, n_out = req.rtt_s / 2, job.output_tokens
            served.append(
                Served(
                    stream=req.stream,
                    region=job.rep.region,
                    replica=job.rep.id,
                    arrival_s=req.arrival_s,
                    wait_ms=(job.started_s - req.queued_s) * 1000,
                    ttft_ms=(first + half - req.arrival_s) * 1000,
                    tpot_ms=(t - first) * 1000 / (n_out - 1) if n_out > 1 else 0.0,
                    done_s=t + half,
                    output_tokens=n_out,
                )
            )

    while heap:
        t, _, kind, data = heapq.heappop(heap)
        now[0] = t
        if kind == _ARRIVE:
            i, j = data  # type: ignore[misc]
            s = streams[i]
            router = routers[s.origin]
            try:
                placement = router.pick(s.model, s.hints)
            except ModelgridError as exc:
                if t >= start_window:
                    rejected.append((i, t, exc.message))
                continue
            router.begin(placement)
            rtt_s = (topology.latency(s.origin, placement.region) or 0.0) / 1000
            req = _Request(i, j, t, placement, rtt_s)
            heapq.heappush(heap, (t + overhead_s[i] + rtt_s / 2, seq, _ENQUEUE, req))
            seq += 1
        elif kind == _ENQUEUE:
            assert isinstance(data, _Request)
            rep = replicas[data.placement.replica_id]
            data.queued_s = t
            if rep.busy < rep.slots:
                start(rep, data, t)
            else:
                rep.queue.append(data)
        elif kind == _FINISH:
            rep, req = data  # type: ignore[misc]
            rep.busy -= 1
            heapq.heappush(heap, (t + req.rtt_s / 2, seq, _GW_END, req))
            seq += 1
            if rep.queue:
                start(rep, rep.queue.popleft(), t)
        elif kind == _JOB_END:
            ended, version = cast(tuple[_Job, int], data)
            if version != ended.version:
                continue  # rescheduled since
            rep, req = ended.rep, ended.req
            assert rep.host is not None
            advance(rep.host, t)
            job_end(ended, t)
            rep.busy -= 1
            if rep.busy == 0:
                rep.host.busy -= 1
            heapq.heappush(heap, (t + req.rtt_s / 2, seq, _GW_END, req))
            seq += 1
            if rep.queue:
                start(rep, rep.queue.popleft(), t)
            elif rep.host.jobs:
                reschedule(rep.host, t)  # one replica fewer busy: the others speed up
        elif kind == _GW_END:
            assert isinstance(data, _Request)
            routers[streams[data.stream].origin].end(data.placement, Outcome.SUCCESS)
        else:  # a probe round: each replica's own queue, as /health/ready reports it
            for rep in replicas.values():
                book.of(rep.id).queue_depth = len(rep.queue)
            if t < end:
                assert config.probe_interval_s is not None
                heapq.heappush(heap, (t + config.probe_interval_s, -1, _PROBE, None))
    return SimResult(
        streams=streams,
        served=served,
        rejected=rejected,
        busy_s=busy,
        replicas={rid: (r.model, r.region) for rid, r in replicas.items()},
        window_s=(start_window, max(end, start_window)),
    )


__all__ = ["Served", "SimConfig", "SimResult", "Stream", "quantile", "simulate"]
