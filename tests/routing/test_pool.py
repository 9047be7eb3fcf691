"""An upstream **pool** (a Ray Serve application behind one URL: ``attempts`` > 1,
``prefix_header``): retried on itself before the first byte, its members' failures not held
against its breaker, the prompt's prefix fingerprint sent in the named header."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from modelgrid.core.errors import ServiceUnavailableError, TopologyError, UpstreamError
from modelgrid.core.types import ChatMessage, InferenceRequest, RoutingHints
from modelgrid.engines.upstream import UpstreamEngine, prefix_key
from modelgrid.routing.prefix import fingerprint, prompt_text
from modelgrid.routing.router import Router
from modelgrid.routing.topology import Deployment, Region, Replica, Topology, dumps, loads
from tests.scripted_upstream import (
    AppThread,
    Exchange,
    Receive,
    ScriptedUpstream,
    Send,
    body,
    chunk,
    event,
    json_reply,
    start_sse,
    stream_reply,
)

LONG = "You are a careful assistant. " * 40  # 1160 characters: 4 whole blocks of 256


def topology(*replicas: Replica) -> Topology:
    t = Topology((Region("ray"),), gateway_region="ray")
    return t.with_deployment(Deployment("m", "ray", replicas))


def test_a_pool_is_picked_again_until_its_attempts_are_spent() -> None:
    router = Router(topology(Replica("serve", "upstream", "http://h:8000/m/v1", attempts=3)))
    hints = RoutingHints()
    assert router.pick("m", hints, exclude=("serve",)).replica_id == "serve"
    assert router.pick("m", hints, exclude=("serve", "serve")).replica_id == "serve"
    with pytest.raises(ServiceUnavailableError):
        router.pick("m", hints, exclude=("serve", "serve", "serve"))


def test_a_plain_replica_is_tried_once() -> None:
    router = Router(topology(Replica("one", "upstream", "http://h:9001/v1")))
    with pytest.raises(ServiceUnavailableError):
        router.pick("m", RoutingHints(), exclude=("one",))


def test_pool_fields_round_trip_through_the_topology_file() -> None:
    t = topology(
        Replica("serve", "upstream", "http://h:8000/m/v1", attempts=3, prefix_header="x-session-id")
    )
    text = dumps(t)
    assert 'attempts = 3\nprefix_header = "x-session-id"' in text
    assert loads(text) == t
    plain = dumps(topology(Replica("one", "upstream", "http://h:9001/v1")))
    assert "attempts" not in plain and "prefix_header" not in plain


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("attempts = 0", "deployments[0].replicas[0].attempts"),
        ("attempts = 17", "deployments[0].replicas[0].attempts"),
        ('prefix_header = "x session"', "deployments[0].replicas[0].prefix_header"),
    ],
)
def test_bad_pool_fields_are_refused_naming_the_field(extra: str, message: str) -> None:
    text = f"""
gateway_region = "ray"
[[regions]]
id = "ray"
[[deployments]]
model = "m"
region = "ray"
[[deployments.replicas]]
base_url = "http://h:8000/m/v1"
{extra}
"""
    with pytest.raises(TopologyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        loads(text)


def test_a_local_replica_takes_no_pool_fields() -> None:
    text = """
gateway_region = "ray"
[[regions]]
id = "ray"
[[deployments]]
model = "m"
region = "ray"
[[deployments.replicas]]
kind = "local"
attempts = 2
"""
    with pytest.raises(TopologyError, match="attempts and prefix_header are for upstream"):
        loads(text)


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    app = ScriptedUpstream()
    server = AppThread(app).start()
    app.base_url = f"{server.base_url}/m/v1"  # type: ignore[attr-defined]
    yield app
    app.release.set()
    server.stop()


async def started(upstream: ScriptedUpstream, **kwargs: object) -> AsyncIterator[UpstreamEngine]:
    e = UpstreamEngine("m", upstream.base_url, read_timeout_s=5, **kwargs)  # type: ignore[arg-type, attr-defined]
    await e.start()
    try:
        yield e
    finally:
        await e.aclose()


@pytest.fixture
async def pool(upstream: ScriptedUpstream) -> AsyncIterator[UpstreamEngine]:
    async for e in started(upstream, pool=True, prefix_header="x-session-id"):
        yield e


@pytest.fixture
async def plain(upstream: ScriptedUpstream) -> AsyncIterator[UpstreamEngine]:
    async for e in started(upstream):
        yield e


def long_request() -> InferenceRequest:
    r = InferenceRequest("req-1", "m", messages=[ChatMessage("user", LONG)])
    r.prefix_fingerprint = fingerprint(prompt_text(r))
    return r


async def test_the_fingerprint_goes_in_the_pools_header(
    pool: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    upstream.handler = stream_reply(["Hi"])
    request = long_request()
    assert len(request.prefix_fingerprint) == 4
    _ = [d async for d in pool.stream(pool.prepare(request))]
    sent = upstream.exchanges[0].headers["x-session-id"]
    assert sent == prefix_key(request.prefix_fingerprint)
    assert [int(h, 16) for h in sent.split(".")] == list(request.prefix_fingerprint)
    # a prompt shorter than one block has no fingerprint: no header
    short = InferenceRequest("req-2", "m", messages=[ChatMessage("user", "hi")])
    _ = [d async for d in pool.stream(pool.prepare(short))]
    assert "x-session-id" not in upstream.exchanges[1].headers


async def test_no_header_without_prefix_header(
    plain: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    upstream.handler = stream_reply(["Hi"])
    _ = [d async for d in plain.stream(plain.prepare(long_request()))]
    assert "x-session-id" not in upstream.exchanges[0].headers


async def test_a_pools_500_is_retryable_and_not_its_fault(
    pool: UpstreamEngine, plain: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    upstream.handler = json_reply(500, {"error": {"message": "Internal Server Error"}})
    with pytest.raises(UpstreamError) as info:
        _ = [d async for d in pool.stream(pool.prepare(long_request()))]
    assert (info.value.status, info.value.retryable, info.value.replica_fault) == (502, True, False)
    with pytest.raises(UpstreamError) as info:
        _ = [d async for d in plain.stream(plain.prepare(long_request()))]
    assert (info.value.retryable, info.value.replica_fault) == (False, True)


async def test_a_stream_cut_by_the_pool_is_an_error_not_its_fault(
    pool: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    async def cut(ex: Exchange, send: Send, receive: Receive) -> None:
        await start_sse(send)
        await body(send, event(chunk("Hel")))
        raise RuntimeError("the replica died")  # uvicorn drops the chunked body unfinished

    upstream.handler = cut
    got = []
    with pytest.raises(UpstreamError) as info:
        async for d in pool.stream(pool.prepare(long_request())):
            got.append(d.text)
    assert got == ["Hel"]
    assert info.value.code == "upstream_disconnected" and info.value.replica_fault is False


async def test_an_unreachable_pool_is_its_fault() -> None:
    from tests.support import free_port

    e = UpstreamEngine("m", f"http://127.0.0.1:{free_port()}/m/v1", pool=True, context_length=8)
    await e.start()
    try:
        with pytest.raises(UpstreamError) as info:
            _ = [d async for d in e.stream(e.prepare(long_request()))]
    finally:
        await e.aclose()
    assert info.value.retryable is True and info.value.replica_fault is True


async def test_a_pool_failing_before_the_first_byte_is_retried_on_itself(
    upstream: ScriptedUpstream,
) -> None:
    from modelgrid.routing.grid import Grid
    from modelgrid.routing.health import BreakerState

    answer = stream_reply(["Hi"])
    calls: list[int] = []

    async def flaky(ex: Exchange, send: Send, receive: Receive) -> None:
        calls.append(1)
        if len(calls) <= 3:  # three members of the pool die in turn, the fourth answers
            await json_reply(500, {"error": {"message": "Internal Server Error"}})(
                ex, send, receive
            )
        else:
            await answer(ex, send, receive)

    upstream.handler = flaky
    url = upstream.base_url  # type: ignore[attr-defined]
    grid = Grid(topology(Replica("serve", "upstream", url, attempts=4)), probe_interval_s=60)
    await grid.start()
    try:
        [engine] = grid.engines()
        request = long_request()
        deltas = [d async for d in engine.stream(engine.prepare(request))]
    finally:
        await grid.aclose()
    assert "".join(d.text for d in deltas) == "Hi"
    assert len(calls) == 4
    h = grid.router.health.of("serve")
    assert (h.breaker.state, h.failed, grid.router.failovers) == (BreakerState.CLOSED, 0, {"m": 3})


def test_the_admin_api_shows_a_pools_fields() -> None:
    from modelgrid.control.topology import deployment_object
    from modelgrid.routing.grid import Grid

    replica = Replica("serve", "upstream", "http://h:8000/m/v1", attempts=3, prefix_header="x-s")
    t = topology(replica)
    grid = Grid(t)
    [shown] = deployment_object(grid, t.deployments[0]).replicas
    assert (shown.attempts, shown.prefix_header) == (3, "x-s")
