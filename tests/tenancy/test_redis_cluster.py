"""The limiter on a real Redis Cluster (#16): three masters started here (``redis-server
--cluster-enabled yes`` on free ports, joined by ``redis-cli --cluster create``), reached
through a ``redis+cluster://`` URL (``redis.asyncio.cluster.RedisCluster``). Workspaces whose
hash tags live on different masters are each limited exactly; a key and its workspace share
one slot, so one script admits both; the change feed's wake-ups reach a subscriber through
the cluster's pub/sub."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from modelgrid.control.redis_feed import RedisAnnouncer, RedisWakeups
from modelgrid.core.errors import RateLimitError
from modelgrid.tenancy.limits import ScopeLimits
from modelgrid.tenancy.ratelimit_redis import RedisLimiter, cluster_node_url

pytestmark = pytest.mark.redis
MASTERS = 3


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """Three masters covering the 16384 slots; their ports. Stopped (each by its pid) after
    the module's tests."""
    assert shutil.which("redis-server") and shutil.which("redis-cli")
    base = tmp_path_factory.mktemp("cluster")
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for _ in range(MASTERS):
            port = _free_cluster_port()
            d = base / str(port)
            d.mkdir()
            options = {
                "port": str(port),
                "bind": "127.0.0.1",
                "cluster-enabled": "yes",
                "cluster-config-file": str(d / "nodes.conf"),
                "cluster-node-timeout": "2000",
                "dir": str(d),
                "save": "",
                "appendonly": "no",
            }
            argv = ["redis-server"]
            for name, value in options.items():
                argv += [f"--{name}", value]
            procs.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            ports.append(port)
        for port in ports:
            _wait(lambda port=port: redis.Redis(port=port).ping(), "a node to start")
        nodes = [f"127.0.0.1:{p}" for p in ports]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

        def ok() -> bool:
            return all(redis.Redis(port=p).cluster("info")["cluster_state"] == "ok" for p in ports)

        _wait(ok, "the cluster to be ok")
        yield ports
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(10)


def _wait(check: object, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _node_of(ports: list[int], key: str) -> int:
    """The port of the master that holds ``key``'s slot."""
    c = redis.Redis(port=ports[0])
    slot = int(c.cluster("keyslot", key))
    for start, end, master, *_ in c.cluster("slots"):
        if start <= slot <= end:
            return int(master[1])
    raise LookupError(slot)


def test_cluster_urls() -> None:
    assert cluster_node_url("redis+cluster://10.0.0.1:7000") == "redis://10.0.0.1:7000"
    assert cluster_node_url("rediss+cluster://u:p@h:7000/0") == "rediss://u:p@h:7000/0"
    assert cluster_node_url("redis://127.0.0.1:6379/0") is None
    assert cluster_node_url("unix:///run/redis.sock") is None


async def test_limits_are_exact_across_the_masters(cluster: list[int]) -> None:
    limiter = RedisLimiter.from_url(f"redis+cluster://127.0.0.1:{cluster[0]}")
    # Workspaces until their tags sit on every master.
    spaces: dict[int, str] = {}
    while len(spaces) < MASTERS:
        ws = f"ws:c{secrets.token_hex(4)}"
        spaces.setdefault(_node_of(cluster, f"mg:rl:{{{ws}}}:rpm"), ws)
    try:
        for ws in spaces.values():
            key = f"key:{secrets.token_hex(4)}"
            limits = (
                ScopeLimits(ws, rpm=3, concurrency=10),
                ScopeLimits(key, rpm=100, tag=ws),
            )
            admitted = [await limiter.acquire(f"r{i}-{ws}", limits, 5) for i in range(3)]
            with pytest.raises(RateLimitError) as exc:  # the workspace's 4th in the minute
                await limiter.acquire(f"r3-{ws}", limits, 5)
            assert exc.value.code == "rate_limit_exceeded"
            assert exc.value.headers["x-ratelimit-limit-requests"] == "3"
            for adm in admitted:
                await limiter.settle(adm, 4, 0)
            inflight = redis.Redis(port=_node_of(cluster, f"mg:rl:{{{ws}}}:inflight"))
            assert inflight.zcard(f"mg:rl:{{{ws}}}:inflight") == 0  # released on its master
    finally:
        await limiter.aclose()


async def test_wakeups_reach_subscribers_through_the_cluster(cluster: list[int]) -> None:
    got: list[str] = []
    woken = asyncio.Event()

    def on_message(topic: str) -> None:
        if topic:
            got.append(topic)
            woken.set()

    # Subscribed on one master, published through another: the cluster carries it.
    wakeups = RedisWakeups(f"redis+cluster://127.0.0.1:{cluster[1]}", on_message)
    announcer = RedisAnnouncer(f"redis+cluster://127.0.0.1:{cluster[2]}", in_thread=False)
    wakeups.start()
    try:
        await asyncio.wait_for(wakeups.subscribed.wait(), 10)
        announcer(("prices",))
        await asyncio.wait_for(woken.wait(), 5)
        assert got == ["prices"] and announcer.published == 1
    finally:
        await wakeups.aclose()
        announcer.close()
