"""Many gateways, one control plane (#16): three gateways (real uvicorn servers, each with its
own data directory, as on three machines: no shared epoch file) on one PostgreSQL and one
Redis. An admin change made on one — a topology change, a price, a revoked key — is live on
the others within a second, and the test measures how soon (``PROPAGATION_MS`` is printed;
bench/RESULTS.md records it). The caches are made long (keys trusted 60 s, prices reloaded
every 10 min) so that only the change feed can explain what the others see.

On SQLite (one machine, several processes) the same holds through the polled counters."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from modelgrid.config import Settings
from modelgrid.control.redis_feed import CHANNEL
from modelgrid.engines.fake import FakeEngine
from tests.databases import migrated_sqlite, postgres_database
from tests.support import ThreadServer, create_key, db_rows, usage_rows_matching

REDIS_URL = "redis://127.0.0.1:6379/14"
LIMIT_S = 1.0
PROPAGATION_MS: dict[str, list[float]] = {}


def gateway_settings(
    data_dir: Path, url: str, *, redis: bool, poll_interval_s: float = 0.5
) -> Settings:
    extra: dict[str, Any] = {}
    if redis:
        extra["ratelimit"] = {"backend": "redis", "redis_url": REDIS_URL}
    return Settings(
        data_dir=data_dir,
        database={"url": url},  # type: ignore[arg-type]
        metering={"flush_interval_s": 0.05, "prices_refresh_s": 600},  # type: ignore[arg-type]
        auth={"cache_ttl_s": 60},  # type: ignore[arg-type]
        control={"topology_store": "database", "poll_interval_s": poll_interval_s},  # type: ignore[arg-type]
        **extra,
    )


def start_gateways(
    tmp_path: Path, url: str, n: int, *, redis: bool, poll_interval_s: float = 0.5
) -> list[ThreadServer]:
    servers = []
    for i in range(n):
        settings = gateway_settings(
            tmp_path / f"gw{i}", url, redis=redis, poll_interval_s=poll_interval_s
        )
        servers.append(ThreadServer(settings, _engines).start())
    return servers


def _engines(_s: Settings) -> list[FakeEngine]:
    return [FakeEngine()]


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def seen_within(
    what: str, others: list[ThreadServer], check: Callable[[ThreadServer], bool], start: float
) -> list[float]:
    """Poll each of ``others`` until ``check`` holds; each must within ``LIMIT_S`` of ``start``
    (when the admin call returned: the change committed). Returns each one's delay in ms,
    recorded under ``what`` (polling goes on to 5 s, so a failure says how late it was)."""
    pending = list(others)
    delays: list[float] = [5000.0] * len(others)
    while pending and time.monotonic() - start < 5:
        for server in list(pending):
            if check(server):
                delays[others.index(server)] = (time.monotonic() - start) * 1000
                pending.remove(server)
        time.sleep(0.002)
    PROPAGATION_MS.setdefault(what, []).extend(delays)
    print(f"PROPAGATION_MS {what}: {[round(d, 1) for d in delays]}")
    assert max(delays) < LIMIT_S * 1000, f"{what}: ms to each other gateway {delays}"
    return delays


def admin_client(server: ThreadServer, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.base_url}/admin/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def models_status(server: ThreadServer, key: str) -> int:
    r = httpx.get(f"{server.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    return r.status_code


def run_scenario(servers: list[ThreadServer], url: str) -> None:
    admin = create_key(url, role="admin", workspace="admin").plaintext
    tenant = create_key(url, name="tenant")
    for s in servers:  # every gateway has the tenant's key cached (trusted 60 s)
        assert models_status(s, tenant.plaintext) == 200
    a, b, c = servers

    # A topology change on gateway a: a new region, live on b and c.
    with admin_client(a, admin) as http:
        r = http.post("/regions", json={"id": "eu-west-1", "name": "Ireland", "jurisdiction": "IE"})
        assert r.status_code == 200, r.text
        start = time.monotonic()  # times run from the change committed to the change seen
    seen_within(
        "topology", [b, c], lambda s: s.state.grid.topology.region("eu-west-1") is not None, start
    )
    for s in (b, c):
        with admin_client(s, admin) as http:
            assert http.get("/regions/eu-west-1").json()["jurisdiction"] == "IE"

    # A price on gateway b: in c's and a's price books.
    with admin_client(b, admin) as http:
        body = {
            "model": "fake-model",
            "input_micros_per_1m": 7_000_000,
            "output_micros_per_1m": 9_000_000,
        }
        r = http.post("/prices", json=body)
        assert r.status_code == 200, r.text
        start = time.monotonic()
        price_id = r.json()["id"]

    def priced(s: ThreadServer) -> bool:
        entry = s.state.tenancy.prices.lookup("fake-model", None, datetime.now(UTC))
        return entry is not None and entry.price_id == price_id

    seen_within("price", [c, a], priced, start)

    # Requests on every gateway: each recorded exactly once, priced with the new price.
    for s in servers:
        for _ in range(2):
            r = httpx.post(
                f"{s.base_url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {tenant.plaintext}"},
                json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
                timeout=10,
            )
            assert r.status_code == 200, r.text
    rows = usage_rows_matching(a, api_key_id=tenant.key_id)
    deadline = time.monotonic() + 10
    while len(rows) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = usage_rows_matching(a, api_key_id=tenant.key_id)
    assert len(rows) == 6 and len({r["request_id"] for r in rows}) == 6
    assert {r["price_id"] for r in rows} == {price_id}
    assert all(r["cost_micros"] > 0 for r in rows)

    # The tenant's key revoked on gateway c: refused by a and b (their caches trusted it).
    with admin_client(c, admin) as http:
        assert http.delete(f"/keys/{tenant.key_id}").status_code == 200
        start = time.monotonic()
    assert models_status(c, tenant.plaintext) == 401
    seen_within("revocation", [a, b], lambda s: models_status(s, tenant.plaintext) == 401, start)

    # Two regions added at once on two gateways: neither change is lost (the stored topology
    # is written only over the version it was read at), every gateway ends with both.
    def add(server: ThreadServer, region: str) -> int:
        with admin_client(server, admin) as http:
            return http.post("/regions", json={"id": region}).status_code

    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(add, [a, b], ["us-east-1", "ap-south-1"]))
    assert codes == [200, 200]
    both = {"eu-west-1", "us-east-1", "ap-south-1"}
    deadline = time.monotonic() + LIMIT_S
    for s in servers:
        while not both <= {r.id for r in s.state.grid.topology.regions}:
            assert time.monotonic() < deadline, "a concurrent topology change was lost"
            time.sleep(0.002)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(120)
def test_three_gateways_on_postgres_and_redis(tmp_path: Path, pg_url: str) -> None:
    servers = start_gateways(tmp_path, pg_url, 3, redis=True)
    try:
        listening = db_rows(
            pg_url,
            "SELECT count(*) AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        assert listening == [{"n": 3}]  # each gateway LISTENs
        run_scenario(servers, pg_url)
    finally:
        for s in reversed(servers):
            s.stop()


@pytest.mark.timeout(120)
def test_three_gateways_on_one_sqlite_file(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path / "shared.db")
    servers = start_gateways(tmp_path, url, 3, redis=False)
    try:
        run_scenario(servers, url)
    finally:
        for s in reversed(servers):
            s.stop()


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_three_gateways_on_one_sqlite_file_woken_by_redis(tmp_path: Path) -> None:
    """No NOTIFY on SQLite: each change is published on Redis after its commit. The poll is
    made 30 s long, so only the Redis wake-ups can make the changes live within a second."""
    url = migrated_sqlite(tmp_path / "shared.db")
    with redis.Redis.from_url(REDIS_URL) as r:
        before = dict(r.pubsub_numsub(CHANNEL))[CHANNEL.encode()]  # others' subscribers
    servers = start_gateways(tmp_path, url, 3, redis=True, poll_interval_s=30)
    try:
        with redis.Redis.from_url(REDIS_URL) as r:  # every gateway subscribed
            deadline = time.monotonic() + 10
            while dict(r.pubsub_numsub(CHANNEL))[CHANNEL.encode()] < before + 3:
                assert time.monotonic() < deadline, "the gateways never subscribed"
                time.sleep(0.01)
        run_scenario(servers, url)
    finally:
        for s in reversed(servers):
            s.stop()
