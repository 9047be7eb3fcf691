"""A placement counts as in flight from the moment it is made (``Router.reserve``), not only
once the request is sent (``begin``): requests placed within the same milliseconds — before
any of them passed admission and was sent — spread over the replicas instead of all landing
on the one that looked idle to each."""

from __future__ import annotations

import asyncio
import random

import pytest

from modelgrid.config import RoutingSettings
from modelgrid.core.types import ChatMessage, InferenceRequest
from modelgrid.routing import router as router_module
from modelgrid.routing.engine import RoutedEngine
from modelgrid.routing.health import HealthBook
from modelgrid.routing.router import Router
from modelgrid.routing.topology import Deployment, Region, Replica, Topology
from tests.routing.scripted import ScriptedReplica

MODEL = "m"


def _routed(calls: list[str]) -> tuple[Router, RoutedEngine]:
    replicas = tuple(Replica(f"r{i}", "upstream", "http://x/v1") for i in range(3))
    topology = Topology(
        (Region("eu", jurisdiction="DE"),), (Deployment(MODEL, "eu", replicas),), "eu"
    )
    router = Router(
        topology,
        config=RoutingSettings(),
        health=HealthBook(),
        ready=lambda _: True,
        rng=random.Random(7),  # power of two choices: unseeded, a burst could miss r1
    )
    engines = {r.id: ScriptedReplica(MODEL, r.id, calls=calls) for r in replicas}
    routed = RoutedEngine(
        MODEL, router, engines.get, lambda: engines["r0"].card, lambda: list(engines)
    )
    return router, routed


def _request(i: int) -> InferenceRequest:
    return InferenceRequest(
        f"req-{i}", MODEL, messages=[ChatMessage("user", "the same long prompt " * 200)]
    )


def _burst(router: Router, routed: RoutedEngine, n: int) -> list[object]:
    """``n`` requests of one prompt placed before any is sent, its prefix already on r0."""
    first = _request(0)
    routed.prepare(first)  # computes the prompt's fingerprint
    router.prefixes.record(first.prefix_fingerprint, "r0")
    for h in router.health.replicas.values():
        h.reserved.clear()
    return [routed.prepare(_request(i)) for i in range(n)]


def test_requests_placed_at_once_spread_and_sending_takes_the_reservation() -> None:
    calls: list[str] = []
    router, routed = _routed(calls)
    prepared = _burst(router, routed, 6)
    placed = [p.payload.placement.replica_id for p in prepared]  # type: ignore[attr-defined]
    # the prefix owner takes max_imbalance (2) more than the others, then they share
    assert placed[:3] == ["r0", "r0", "r0"] and set(placed) == {"r0", "r1", "r2"}
    assert sum(len(router.health.of(r).reserved) for r in ("r0", "r1", "r2")) == 6

    async def send(p: object) -> None:
        async for _ in routed.stream(p):  # type: ignore[arg-type]
            pass

    before = len(router.health.of(placed[-1]).reserved)
    asyncio.run(send(prepared[-1]))
    h = router.health.of(placed[-1])
    assert (len(h.reserved), h.in_flight) == (before - 1, 0)  # reservation taken, then ended
    assert calls == [placed[-1]]


def test_without_reservations_a_burst_lands_on_one_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defect it fixes: placements that expire at once (as if never reserved) all see
    the prefix owner idle, and all six go there."""
    monkeypatch.setattr(router_module, "RESERVATION_S", 0.0)
    router, routed = _routed([])
    placed = [p.payload.placement.replica_id for p in _burst(router, routed, 6)]  # type: ignore[attr-defined]
    assert placed == ["r0"] * 6
