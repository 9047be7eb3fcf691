"""``RoutedEmbeddingEngine`` over scripted embedding replicas: one request's calls stay on its
replica, a retryable failure moves it to another allowed replica (never outside the allowed
regions), a 4xx does not, drained regions and forbidden ones are never picked, and every call
is reported to the router."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from modelgrid.core.errors import (
    InvalidRequestError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from modelgrid.core.types import RoutingHints
from modelgrid.engines.embedding import EmbeddingEngine, Embeddings
from modelgrid.engines.fake_embedding import FakeEmbeddingEngine
from modelgrid.routing.embedding import RoutedEmbeddingEngine
from modelgrid.routing.router import Router
from modelgrid.routing.topology import Deployment, Region, Replica, Topology

EMB = "fake-embedding"


class Recorder(FakeEmbeddingEngine):
    """A fake embedding replica that logs each call as ``"<replica>:<call>"``."""

    def __init__(self, name: str, log: list[str], *, fail_count: bool = False) -> None:
        super().__init__(EMB)
        self.name, self.log, self.fail_count = name, log, fail_count

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        self.log.append(f"{self.name}:count")
        if self.fail_count:
            raise OSError("connection refused")
        return await super().count_tokens(texts)

    async def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        self.log.append(f"{self.name}:decode")
        if any(not ids for ids in token_ids):
            raise InvalidRequestError("empty", param="input")
        return await super().decode(token_ids)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        self.log.append(f"{self.name}:embed")
        return await super().embed(texts)


def topology(*, us_enabled: bool = True) -> Topology:
    """``eu-1`` in eu-west-1 (nearest the gateway), ``us-1`` in us-east-1."""
    url = "http://127.0.0.1:9/v1"
    return Topology(
        regions=(
            Region("local"),
            Region("eu-west-1", jurisdiction="IE"),
            Region("us-east-1", jurisdiction="US", enabled=us_enabled),
        ),
        deployments=(
            Deployment(EMB, "eu-west-1", (Replica("eu-1", "upstream", url),)),
            Deployment(EMB, "us-east-1", (Replica("us-1", "upstream", url),)),
        ),
        gateway_region="local",
        latency_ms={("eu-west-1", "local"): 10.0, ("local", "us-east-1"): 80.0},
    )


def replicas(log: list[str], *, eu_fails: bool = False) -> dict[str, EmbeddingEngine]:
    return {"eu-1": Recorder("eu", log, fail_count=eu_fails), "us-1": Recorder("us", log)}


def routed(
    t: Topology, engines: dict[str, EmbeddingEngine]
) -> tuple[Router, RoutedEmbeddingEngine]:
    router = Router(t)
    engine = RoutedEmbeddingEngine(
        EMB, router, engines.get, lambda: engines["eu-1"].card, lambda: list(engines)
    )
    return router, engine


def test_one_requests_calls_stay_on_its_replica_and_are_reported() -> None:
    log: list[str] = []
    router, engine = routed(topology(), replicas(log))
    route = engine.route(RoutingHints())
    assert (route.placement.region, route.placement.replica_id) == ("eu-west-1", "eu-1")
    assert asyncio.run(route.count_tokens(["a b", "c"])) == [2, 1]
    assert asyncio.run(route.decode([[1, 2]])) == ["t1 t2"]
    result = asyncio.run(route.embed(["a b"]))
    assert (len(result.vectors), result.dimensions, route.dimensions) == (1, 3, 3)
    assert log == ["eu:count", "eu:decode", "eu:embed"]
    assert router.health.of("eu-1").in_flight == 0
    assert router.failovers == {}


def test_the_allowed_region_only_even_when_another_is_nearer() -> None:
    log: list[str] = []
    _, engine = routed(topology(), replicas(log))
    route = engine.route(RoutingHints(allowed_regions=frozenset({"us-east-1"})))
    asyncio.run(route.count_tokens(["x"]))
    asyncio.run(route.embed(["x"]))
    assert route.placement.replica_id == "us-1"
    assert log == ["us:count", "us:embed"]


def test_a_retryable_failure_moves_the_request_to_the_next_allowed_replica() -> None:
    log: list[str] = []
    router, engine = routed(topology(), replicas(log, eu_fails=True))
    route = engine.route(RoutingHints())
    assert asyncio.run(route.count_tokens(["a b"])) == [2]
    asyncio.run(route.embed(["a b"]))  # where the count was made
    assert route.placement.replica_id == "us-1" and route.tried == ("eu-1",)
    assert log == ["eu:count", "us:count", "us:embed"]
    assert router.failovers == {EMB: 1}
    eu, us = router.health.of("eu-1"), router.health.of("us-1")
    assert (eu.failed, eu.breaker.failures, eu.last_error) == (1, 1, "OSError: ")
    assert (us.served, us.failed) == (2, 0)
    assert (eu.in_flight, us.in_flight) == (0, 0)


def test_no_failover_outside_the_allowed_regions_or_for_a_bad_input() -> None:
    log: list[str] = []
    _, engine = routed(topology(), replicas(log, eu_fails=True))
    eu_only = engine.route(RoutingHints(allowed_regions=frozenset({"eu-west-1"})))
    with pytest.raises(ServiceUnavailableError) as unavailable:
        asyncio.run(eu_only.count_tokens(["x"]))
    assert unavailable.value.code == "no_healthy_replica"
    assert isinstance(unavailable.value.__cause__, OSError)
    us = engine.route(RoutingHints(allowed_regions=frozenset({"us-east-1"})))
    with pytest.raises(InvalidRequestError):
        asyncio.run(us.decode([[]]))
    assert log == ["eu:count", "us:decode"]


def test_drained_and_forbidden_regions_are_never_picked() -> None:
    log: list[str] = []
    _, engine = routed(topology(us_enabled=False), replicas(log))
    us_only = RoutingHints(allowed_regions=frozenset({"us-east-1"}))
    with pytest.raises(ServiceUnavailableError):
        engine.route(us_only)  # its only region is drained
    assert engine.route(RoutingHints(preferred_region="us-east-1")).placement.region == (
        "eu-west-1"
    )
    with pytest.raises(PermissionDeniedError) as forbidden:
        engine.route(RoutingHints(allowed_regions=frozenset({"local"})))
    assert forbidden.value.code == "region_not_allowed"
    with pytest.raises(PermissionDeniedError) as by_law:
        engine.route(RoutingHints(allowed_jurisdictions=frozenset({"DE"})))
    assert by_law.value.code == "region_not_allowed"
    assert log == []
