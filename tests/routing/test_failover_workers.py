"""Failover with REAL ``modelgrid engine`` worker processes in three regions behind an
in-process gateway: a replica SIGKILLed under load fails no request that had not started
streaming, and with a whole region down traffic moves to the next allowed region — never
to a closer but forbidden one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.routing.workers import Worker, start_all, topology_toml
from tests.support import ThreadServer, create_key

pytestmark = pytest.mark.e2e

SG, EU, US = "ap-southeast-1", "eu-west-1", "us-east-1"
BODY = {
    "model": "fake-model",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "stream": True,
}


@dataclass
class Grid:
    gateway: ThreadServer
    workers: dict[str, Worker]
    admin_key: str
    tenant_key: str

    def admin(self, path: str) -> dict:
        r = httpx.get(
            f"{self.gateway.base_url}/admin/v1{path}",
            headers={"Authorization": f"Bearer {self.admin_key}"},
        )
        assert r.status_code == 200, r.text
        return r.json()

    def replica_state(self, replica_id: str) -> dict:
        for d in self.admin("/deployments")["data"]:
            for r in d["replicas"]:
                if r["id"] == replica_id:
                    return r["state"]
        raise KeyError(replica_id)


@pytest.fixture
def grid(tmp_path: Path, database_url: str) -> Iterator[Grid]:
    """Workers sg-1, sg-2 (ap-southeast-1, the gateway's region), eu-1 (eu-west-1) and us-1
    (us-east-1, closer to the gateway than eu-west-1); a tenant allowed SG and EU only."""
    workers = start_all(
        [Worker(SG, "sg-1"), Worker(SG, "sg-2"), Worker(EU, "eu-1"), Worker(US, "us-1")], tmp_path
    )
    try:
        path = tmp_path / "topology.toml"
        path.write_text(topology_toml(SG, workers, {SG: {US: 40.0, EU: 160.0}}))
        settings = make_settings(
            tmp_path,
            database_url,
            topology_file=path,
            routing={"probe_interval_s": 0.25, "failure_threshold": 2, "cooldown_s": 30},
        )
        gateway = ThreadServer(settings, lambda _s: [])
        url = settings.database_url
        admin_key = create_key(url, role="admin", workspace="admin").plaintext
        gateway.start()
        try:
            tenant = _tenant(gateway.base_url, admin_key)
            yield Grid(gateway, {w.name: w for w in workers}, admin_key, tenant)
        finally:
            gateway.stop()
    finally:
        for w in workers:
            w.stop()


def _tenant(base: str, admin_key: str) -> str:
    """A workspace allowed ap-southeast-1 and eu-west-1 (home SG), and a key in it."""
    h = {"Authorization": f"Bearer {admin_key}"}
    ws = httpx.post(
        f"{base}/admin/v1/workspaces",
        json={"name": "apac-eu", "allowed_regions": [SG, EU], "home_region": SG},
        headers=h,
    ).json()
    return httpx.post(f"{base}/admin/v1/workspaces/{ws['id']}/keys", json={}, headers=h).json()[
        "key"
    ]


@dataclass
class Outcome:
    status: int
    region: str | None
    started: bool  # a content chunk reached the client
    done: bool  # the stream ended with a finish_reason and [DONE]
    error_event: bool  # the stream ended with an error event


async def stream_one(client: httpx.AsyncClient, key: str) -> Outcome:
    headers = {"Authorization": f"Bearer {key}"}
    async with client.stream("POST", "/v1/chat/completions", json=BODY, headers=headers) as r:
        if r.status_code != 200:
            await r.aread()
            return Outcome(r.status_code, r.headers.get("x-modelgrid-region"), False, False, False)
        started = done = error_event = finished = False
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = finished
                continue
            event = json.loads(data)
            if "error" in event:
                error_event = True
                continue
            for choice in event.get("choices", []):
                started = started or bool(choice["delta"].get("content"))
                finished = finished or choice.get("finish_reason") is not None
        return Outcome(200, r.headers.get("x-modelgrid-region"), started, done, error_event)


async def load(base: str, key: str, n: int, concurrency: int, on_progress=None) -> list[Outcome]:
    sem = asyncio.Semaphore(concurrency)
    out: list[Outcome] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def one() -> None:
            async with sem:
                out.append(await stream_one(client, key))
                if on_progress is not None:
                    on_progress(len(out))

        await asyncio.gather(*(one() for _ in range(n)))
    return out


def test_sigkill_under_load_fails_no_request_that_had_not_started(grid: Grid) -> None:
    killed = []

    def progress(done: int) -> None:
        if done == 15 and not killed:  # mid-run, with requests in flight on both SG replicas
            grid.workers["sg-1"].kill()
            killed.append(True)

    outcomes = asyncio.run(load(grid.gateway.base_url, grid.tenant_key, 120, 12, progress))
    assert killed
    not_started = [o for o in outcomes if not o.started]
    failed = [o for o in outcomes if not o.done]
    # Zero failed requests among those that had not started streaming ...
    assert not_started == [], not_started
    # ... and those cut mid-stream (if any) ended with an error event, never silently.
    assert all(o.error_event for o in failed), failed
    assert len(failed) <= 12  # at most the ones in flight on sg-1 when it died
    assert {o.region for o in outcomes} == {SG}  # sg-2 took over; no need to leave the region
    state = grid.replica_state("sg-1")
    assert state["failed"] >= 1 and state["breaker"] == "open"


def test_region_down_moves_to_the_next_allowed_region_never_a_forbidden_one(grid: Grid) -> None:
    before = asyncio.run(load(grid.gateway.base_url, grid.tenant_key, 6, 3))
    assert {(o.status, o.region, o.done) for o in before} == {(200, SG, True)}
    grid.workers["sg-1"].kill()
    grid.workers["sg-2"].kill()  # ap-southeast-1 is down
    after = asyncio.run(load(grid.gateway.base_url, grid.tenant_key, 40, 8))
    assert {(o.status, o.region, o.done) for o in after} == {(200, EU, True)}, after
    # us-east-1 is closer than eu-west-1 but not allowed: it never saw this tenant.
    assert grid.workers["us-1"].chat_requests() == 0
    assert grid.workers["eu-1"].chat_requests() == 40
    # An unrestricted caller, by contrast, goes to the closer us-east-1.
    anyone = create_key(grid.gateway.settings.database_url, name="anyone").plaintext
    [o] = asyncio.run(load(grid.gateway.base_url, anyone, 1, 1))
    assert (o.status, o.region) == (200, US)
    # The probes saw the dead region: both breakers open, the region shows no capacity.
    regions = {r["id"]: r for r in grid.admin("/regions")["data"]}
    assert regions[SG]["replicas_available"] == 0
    assert regions[EU]["replicas_available"] == 1


def test_all_allowed_regions_down_is_503_with_retry_after(grid: Grid) -> None:
    for name in ("sg-1", "sg-2", "eu-1"):
        grid.workers[name].kill()
    outcomes = asyncio.run(load(grid.gateway.base_url, grid.tenant_key, 10, 5))
    assert {o.status for o in outcomes} == {503}
    r = httpx.post(
        f"{grid.gateway.base_url}/v1/chat/completions",
        json={**BODY, "stream": False},
        headers={"Authorization": f"Bearer {grid.tenant_key}"},
    )
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "no_healthy_replica"
    assert grid.workers["us-1"].chat_requests() == 0  # even now, never the forbidden region
