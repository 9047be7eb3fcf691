"""The grid probes every remote replica, including an upstream from ``settings.upstreams``
that serves a model as the gateway region's ``local`` replica."""

from __future__ import annotations

from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.upstream import UpstreamEngine
from modelgrid.routing import Grid
from modelgrid.routing import topology as topo
from tests.scripted_upstream import AppThread, ScriptedUpstream
from tests.support import free_port


async def test_an_upstream_serving_as_a_local_replica_is_probed() -> None:
    server = AppThread(ScriptedUpstream()).start()
    live = UpstreamEngine("up-live", f"{server.base_url}/v1", context_length=4096)
    dead = UpstreamEngine("up-dead", f"http://127.0.0.1:{free_port()}/v1", context_length=4096)
    fake = FakeEngine("in-process")
    grid = Grid(topo.default_topology(), probe_interval_s=3600)
    try:
        for e in (live, dead, fake):
            grid.attach_local(e)
            await e.start()
        await grid.apply(
            topo.with_local_models(grid.topology, ["up-live", "up-dead", "in-process"])
        )
        await grid.start()
        assert grid.monitor is not None
        assert sorted(grid.monitor.targets()) == ["local/up-dead/local", "local/up-live/local"]
        await grid.monitor.probe_once()
        book = grid.router.health.replicas
        assert book["local/up-live/local"].last_probe_ok is True
        assert book["local/up-dead/local"].last_probe_ok is False
        down = book["local/up-dead/local"]
        assert down.probe_failures >= 1 and down.failed == 0  # probes, not requests
        assert down.breaker.failures == down.probe_failures  # yet they count against it
    finally:
        await grid.aclose()
        for e in (live, dead):
            await e.aclose()
        server.stop()
