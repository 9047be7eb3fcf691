"""Property tests over random topologies, health states and principals' region policies.

Whatever the topology, health and load: the chosen replica is always in the allowed set
(the model's deployments in the caller's regions and jurisdictions); an empty allowed set is a
403; all allowed
replicas down is a 503; failover retries only before the first delta and never leaves the
allowed set; prefix affinity never pulls a request out of it either.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from modelgrid.config import RoutingSettings
from modelgrid.core.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
    UpstreamError,
)
from modelgrid.core.types import ChatMessage, InferenceRequest, RoutingHints
from modelgrid.routing.engine import RoutedEngine, placement_of
from modelgrid.routing.health import HealthBook
from modelgrid.routing.prefix import fingerprint, prompt_text
from modelgrid.routing.router import Router
from modelgrid.routing.topology import Deployment, Region, Replica, Topology
from tests.routing.scripted import ScriptedReplica

POOL = ["r0", "r1", "r2", "r3", "r4"]
JURISDICTIONS = ["SG", "DE", "IE", ""]  # "" = a region that names no jurisdiction
MODEL = "m"
NOW = 10_000.0
# ok/half_open answer; fails refuses before the first delta; dies fails after one delta;
# open / trial (half-open, trial running) / not_ready are unavailable to the router.
STATES = ["ok", "half_open", "fails", "fails", "fails", "dies", "open", "trial", "not_ready"]
AVAILABLE = {"ok", "half_open", "fails", "dies"}


@dataclass
class Scenario:
    topology: Topology
    states: dict[str, str]
    loads: dict[str, int]
    hints: RoutingHints
    owners: list[str]
    seed: int

    def region_of(self, replica_id: str) -> str:
        return next(d.region for d, r in self.topology.replicas() if r.id == replica_id)

    def jurisdiction_allowed(self, region: str) -> bool:
        codes = self.hints.allowed_jurisdictions
        r = self.topology.region(region)
        return codes is None or (r is not None and r.jurisdiction in codes - {""})

    @property
    def usable_regions(self) -> set[str]:
        deployed = {d.region for d in self.topology.deployments}
        allowed = self.hints.allowed_regions
        usable = deployed if allowed is None else deployed & allowed
        return {r for r in usable if self.jurisdiction_allowed(r)}

    def available(self, region: str) -> list[str]:
        t = self.topology
        r = t.region(region)
        d = t.deployment(MODEL, region)
        if r is None or not r.enabled or d is None:
            return []
        return [x.id for x in d.replicas if self.states[x.id] in AVAILABLE]

    def held(self, region: str) -> list[str]:
        """Replicas held back by their open breaker alone: when no replica is available,
        one of them gets the request as a trial."""
        t = self.topology
        r = t.region(region)
        d = t.deployment(MODEL, region)
        if r is None or not r.enabled or d is None:
            return []
        return [x.id for x in d.replicas if self.states[x.id] == "open"]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    regions = tuple(
        Region(
            r,
            jurisdiction=draw(st.sampled_from(JURISDICTIONS)),
            enabled=draw(st.sampled_from([True, True, True, False])),
        )
        for r in POOL
    )
    deployed = draw(
        st.lists(
            st.sampled_from(POOL),
            unique=True,
            min_size=draw(st.sampled_from([0, 1, 1, 1, 2])),
            max_size=len(POOL),
        )
    )
    deployments, states, loads = [], {}, {}
    for region in deployed:
        replicas = []
        for i in range(draw(st.integers(1, 3))):
            rid = f"{region}-{i}"
            cap = draw(st.one_of(st.none(), st.integers(1, 3)))
            replicas.append(Replica(rid, "upstream", "http://127.0.0.1:1/v1", max_concurrency=cap))
            states[rid] = draw(st.sampled_from(STATES))
            loads[rid] = draw(st.integers(0, 4))
        deployments.append(Deployment(MODEL, region, tuple(replicas)))
    latency = {
        (a, b): draw(st.floats(1, 300, allow_nan=False))
        for a in POOL
        for b in POOL
        if a < b and draw(st.booleans())
    }
    allowed = draw(
        st.one_of(st.none(), st.frozensets(st.sampled_from([*POOL, "elsewhere"]), max_size=4))
    )
    hints = RoutingHints(
        # a chained turn's previous replica, drawn anywhere: forbidden regions included
        affinity_replica=draw(st.one_of(st.none(), st.sampled_from(sorted(states) or ["x"]))),
        allowed_regions=allowed,
        preferred_region=draw(st.one_of(st.none(), st.sampled_from([*POOL, "nowhere"]))),
        home_region=draw(st.sampled_from(POOL)),
        allowed_jurisdictions=draw(
            st.one_of(st.none(), st.frozensets(st.sampled_from(["SG", "DE", "IE", "US"])))
        ),
    )
    topology = Topology(regions, tuple(deployments), draw(st.sampled_from(POOL)), latency)
    owners = draw(st.lists(st.sampled_from(sorted(states) or ["none"]), max_size=2, unique=True))
    return Scenario(topology, states, loads, hints, owners, draw(st.integers(0, 2**16)))


def build(s: Scenario, *, max_attempts: int = 4) -> tuple[Router, RoutedEngine, list[str], list]:
    """A router over the scenario with breakers, loads and prefix owners set as drawn, and a
    routed engine over scripted replicas."""
    book = HealthBook(failure_threshold=1, cooldown_s=30, clock=lambda: NOW)
    for rid, state in s.states.items():
        h = book.of(rid)
        h.in_flight = s.loads[rid]
        if state == "open":
            h.breaker.opened_at, h.breaker.current_cooldown_s = NOW - 1, 30
        elif state in ("trial", "half_open"):
            h.breaker.opened_at, h.breaker.current_cooldown_s = NOW - 100, 30
            h.breaker.trial_in_flight = state == "trial"
    router = Router(
        s.topology,
        config=RoutingSettings(max_attempts=max_attempts, block_chars=8),
        health=book,
        rng=random.Random(s.seed),
        ready=lambda rid: s.states[rid] != "not_ready",
    )
    calls: list[str] = []
    engines = {
        rid: ScriptedReplica(MODEL, rid, state if state in ("fails", "dies") else "ok", calls)
        for rid, state in s.states.items()
    }
    routed = RoutedEngine(
        MODEL, router, engines.get, lambda: engines[next(iter(engines))].card, lambda: list(engines)
    )
    request = _request(s.hints)
    blocks = fingerprint(prompt_text(request), block_chars=8)
    for owner in s.owners:  # affinity planted anywhere, forbidden regions included
        router.prefixes.record(blocks, owner)
    return router, routed, calls, [request, blocks]


def _request(hints: RoutingHints) -> InferenceRequest:
    return InferenceRequest(
        "req",
        MODEL,
        messages=[ChatMessage("user", "a shared prefix that is long enough")],
        routing=hints,
    )


def expected_error(s: Scenario) -> type[Exception] | None:
    hints = s.hints
    wanted = hints.preferred_region
    if not s.topology.deployments:
        return ModelNotFoundError  # deployed nowhere (serving's registry 404s it first)
    if (
        wanted is not None
        and hints.allowed_regions is not None
        and wanted not in hints.allowed_regions
    ):
        return PermissionDeniedError
    if wanted is not None and wanted not in POOL:
        return InvalidRequestError
    if wanted is not None and not s.jurisdiction_allowed(wanted):
        return PermissionDeniedError
    if not s.usable_regions:
        return PermissionDeniedError
    if not any(s.available(r) or s.held(r) for r in s.usable_regions):
        return ServiceUnavailableError
    return None


PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(scenarios())
def test_pick_is_always_in_the_allowed_set_or_the_right_error(s: Scenario) -> None:
    router, _, _, (_request, blocks) = build(s)
    error = expected_error(s)
    if error is not None:
        with pytest.raises(error) as info:
            router.pick(MODEL, s.hints, blocks)
        if error is PermissionDeniedError:
            assert info.value.status == 403 and info.value.code == "region_not_allowed"
        if error is ServiceUnavailableError:
            assert info.value.status == 503 and info.value.retry_after_s  # type: ignore[attr-defined]
        return
    p = router.pick(MODEL, s.hints, blocks)
    assert p.region in s.usable_regions
    if not any(s.available(r) for r in s.usable_regions):  # a trial through an open breaker
        assert p.replica_id in s.held(p.region)
        return
    assert p.replica_id in s.available(p.region)
    wanted = s.hints.preferred_region
    if wanted in s.usable_regions:
        free = [
            rid
            for rid in s.available(wanted)  # type: ignore[arg-type]
            if next(r for _, r in s.topology.replicas() if r.id == rid).max_concurrency is None
            or s.loads[rid]
            < next(r for _, r in s.topology.replicas() if r.id == rid).max_concurrency  # type: ignore[operator]
        ]
        if free:
            assert p.region == wanted  # the requested region wins when it can serve


async def _consume(
    engine: RoutedEngine, request: InferenceRequest
) -> tuple[list[str], Exception | None, object]:
    texts: list[str] = []
    try:
        prepared = engine.prepare(request)
    except Exception as exc:
        return texts, exc, None
    try:
        async for delta in engine.stream(prepared):
            texts.append(delta.text)
    except Exception as exc:
        return texts, exc, placement_of(prepared)
    return texts, None, placement_of(prepared)


@PROPS
@given(scenarios())
def test_failover_never_leaves_the_allowed_set_and_never_splices(s: Scenario) -> None:
    _, routed, calls, (request, _) = build(s, max_attempts=100)
    texts, error, placement = asyncio.run(_consume(routed, request))
    event(f"outcome: {type(error).__name__ if error else 'answered'}")
    event(f"replicas tried: {min(len(calls), 3)}{'+' if len(calls) > 3 else ''}")
    # Residency: every replica that saw the request is in an allowed region.
    assert {s.region_of(rid) for rid in calls} <= s.usable_regions
    expected = expected_error(s)
    if expected is not None:
        assert isinstance(error, expected) and calls == []
        return
    answering = [
        rid
        for r in s.usable_regions
        for rid in s.available(r)
        if s.states[rid] in ("ok", "half_open", "dies")
    ] + [rid for r in s.usable_regions for rid in s.held(r)]
    # Attempts before the last one all failed before their first delta.
    assert all(s.states[rid] == "fails" for rid in calls[:-1])
    if not answering:  # only refusing replicas: each tried once, then 503
        assert isinstance(error, ServiceUnavailableError)
        assert isinstance(error.__cause__, UpstreamError)
        assert sorted(calls) == sorted(rid for r in s.usable_regions for rid in s.available(r))
        return
    last = calls[-1]
    assert placement is not None and placement.replica_id == last  # type: ignore[attr-defined]
    assert texts[0] == last  # the answer came from one replica only
    if s.states[last] == "dies":
        assert isinstance(error, UpstreamError) and texts == [last]  # ended, not retried
    else:
        assert error is None and texts == [last, ""]


def test_a_chained_turn_goes_to_the_previous_turns_replica_when_it_is_fair() -> None:
    """``affinity_replica`` wins over a tie (and over the prefix table), across regions
    unless the caller asked for one, and never past the imbalance limit."""
    regions = (Region("eu", jurisdiction="DE"), Region("us", jurisdiction="US"))
    deployments = tuple(
        Deployment(MODEL, r, tuple(Replica(f"{r}-{i}", "upstream", "http://x/v1") for i in (0, 1)))
        for r in ("eu", "us")
    )
    topology = Topology(regions, deployments, "eu", {("eu", "us"): 90.0})
    book = HealthBook(failure_threshold=1, cooldown_s=30, clock=lambda: NOW)
    router = Router(topology, config=RoutingSettings(), health=book, ready=lambda rid: True)
    picks = {
        router.pick(MODEL, RoutingHints(affinity_replica="eu-1")).replica_id for _ in range(20)
    }
    assert picks == {"eu-1"}
    far = RoutingHints(affinity_replica="us-0")
    assert router.pick(MODEL, far).replica_id == "us-0"  # its cache is worth the hop
    asked = RoutingHints(affinity_replica="us-0", preferred_region="eu")
    assert router.pick(MODEL, asked).region == "eu"
    fenced = RoutingHints(affinity_replica="us-0", allowed_regions=frozenset({"eu"}))
    assert router.pick(MODEL, fenced).region == "eu"  # residency first, always
    book.of("eu-1").in_flight = 3  # beyond max_imbalance (2) over eu-0
    assert router.pick(MODEL, RoutingHints(affinity_replica="eu-1")).replica_id == "eu-0"
