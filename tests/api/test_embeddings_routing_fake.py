"""Embeddings routed by the router, over a real uvicorn server: two regions each with one
embedding replica (scripted engines that log their calls, given to the grid through its
``upstream_factory``). A key limited to one region never gets an embedding computed
elsewhere, a drained region is never used, a failed replica fails over with one usage row,
a forbidden region is a 403 in each API's error shape; the headers and the usage row name
where the request ran."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelgrid.engines.embedding import Embeddings
from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.fake_embedding import FakeEmbeddingEngine, fake_vector
from modelgrid.routing.topology import Deployment, Region, Replica, Topology, dumps
from modelgrid.worker import create_worker_app
from tests.conftest import make_settings
from tests.scripted_upstream import AppThread
from tests.support import ThreadServer, create_key, usage_rows

EMB = "fake-embedding"
DS_PATH = "/api/v1/services/embeddings/text-embedding/text-embedding"
URL = "http://127.0.0.1:9/v1"  # never called: the grid's upstream_factory gives fakes


class Recorder(FakeEmbeddingEngine):
    """A scripted embedding replica that logs its calls (``fail``: ``embed`` fails)."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__(EMB, fail=fail)
        self.calls: list[str] = []

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        self.calls.append("count")
        return await super().count_tokens(texts)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        self.calls.append("embed")
        return await super().embed(texts)


def two_regions(*, eu_enabled: bool = True) -> Topology:
    """The gateway's own region (the chat model) plus the embedding model in eu-west-1
    (nearer: an unrestricted key goes there) and us-east-1."""
    return Topology(
        regions=(
            Region("local", "Local"),
            Region("eu-west-1", "Ireland", "IE", enabled=eu_enabled),
            Region("us-east-1", "Virginia", "US"),
        ),
        deployments=(
            Deployment("fake-model", "local", (Replica("local/fake-model/local", "local"),)),
            Deployment(EMB, "eu-west-1", (Replica("eu-1", "upstream", URL),)),
            Deployment(EMB, "us-east-1", (Replica("us-1", "upstream", URL),)),
        ),
        gateway_region="local",
        latency_ms={("eu-west-1", "local"): 10.0, ("local", "us-east-1"): 80.0},
    )


class Grid2:
    """The server, its replicas' engines, and clients for keys of several scopes."""

    def __init__(self, server: ThreadServer, engines: dict[str, Recorder]) -> None:
        self.server = server
        self.engines = engines
        admin = create_key(server.settings.database_url, role="admin", workspace="admin")
        self.admin = self.client(admin.plaintext)
        self.clients: list[httpx.Client] = [self.admin]

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=20
        )

    def apply(self, topology: Topology) -> None:
        """Make ``topology`` live, as a topology change does."""
        state = self.server.state

        async def go() -> None:
            await state.grid.apply(topology)
            state.models.sync_routed(state.grid.engines())

        self.server.call(go())

    def tenant(self, name: str, regions: list[str] | None, home: str) -> httpx.Client:
        body = {"name": name, "allowed_regions": regions, "home_region": home}
        ws = self.admin.post("/admin/v1/workspaces", json=body)
        assert ws.status_code == 200, ws.text
        key = self.admin.post(f"/admin/v1/workspaces/{ws.json()['id']}/keys", json={"name": name})
        assert key.status_code == 200, key.text
        c = self.client(key.json()["key"])
        self.clients.append(c)
        return c

    def calls(self) -> dict[str, list[str]]:
        return {rid: e.calls for rid, e in self.engines.items()}


@pytest.fixture
def grid2(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Grid2]:
    """``request.param``: the eu-1 replica's ``embed`` fails."""
    engines = {"eu-1": Recorder(fail=getattr(request, "param", False)), "us-1": Recorder()}
    # No active probes of the fake upstreams' (unreachable) URLs during the test.
    settings = make_settings(tmp_path, routing={"probe_interval_s": 3600})
    server = ThreadServer(settings, lambda _s: [FakeEngine()]).start()
    server.state.grid.upstream_factory = lambda _d, r: engines[r.id]
    g = Grid2(server, engines)
    g.apply(two_regions())
    yield g
    for c in g.clients:
        c.close()
    server.stop()


def embed(c: httpx.Client, region: str | None = None) -> httpx.Response:
    headers = {"X-Modelgrid-Region": region} if region else {}
    return c.post("/v1/embeddings", json={"model": EMB, "input": "hello world"}, headers=headers)


def placement(r: httpx.Response) -> tuple[str, str]:
    return r.headers["x-modelgrid-region"], r.headers["x-modelgrid-replica"]


def test_a_key_limited_to_one_region_never_gets_an_embedding_computed_elsewhere(
    grid2: Grid2,
) -> None:
    us_only = grid2.tenant("us-only", ["us-east-1"], home="us-east-1")
    for _ in range(3):
        r = embed(us_only)
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["embedding"] == [0.25, 0.5, 0.75]
        assert placement(r) == ("us-east-1", "us-1")
    assert grid2.calls() == {"eu-1": [], "us-1": ["count", "embed"] * 3}
    rows = usage_rows(grid2.server, expect=3)
    assert [(row["region"], row["status"], row["prompt_tokens"]) for row in rows] == [
        ("us-east-1", 200, 2)
    ] * 3
    # The same request from a key allowed anywhere goes to the nearer region.
    anywhere = grid2.tenant("anywhere", None, home="local")
    assert placement(embed(anywhere)) == ("eu-west-1", "eu-1")
    assert grid2.calls()["eu-1"] == ["count", "embed"]


def test_a_region_the_key_may_not_use_is_a_403_in_openais_shape(grid2: Grid2) -> None:
    us_only = grid2.tenant("us-only", ["us-east-1"], home="us-east-1")
    asked = embed(us_only, region="eu-west-1")
    assert asked.status_code == 403
    assert asked.json() == {
        "error": {
            "message": "This API key may not use the region 'eu-west-1' (X-Modelgrid-Region).",
            "type": "permission_error",
            "param": None,
            "code": "region_not_allowed",
        }
    }
    local_only = grid2.tenant("local-only", ["local"], home="local")
    nowhere = embed(local_only)  # the embedding model is deployed in no region it may use
    assert nowhere.status_code == 403
    assert nowhere.json()["error"] == {
        "message": f"The model '{EMB}' is not deployed in any region this API key may use.",
        "type": "permission_error",
        "param": "model",
        "code": "region_not_allowed",
    }
    assert grid2.calls() == {"eu-1": [], "us-1": []}
    assert usage_rows(grid2.server, expect=1, timeout_s=0.3) == []


def test_a_drained_region_is_never_used(grid2: Grid2) -> None:
    grid2.apply(two_regions(eu_enabled=False))
    anywhere = grid2.tenant("anywhere", None, home="local")
    asked_eu = embed(anywhere, region="eu-west-1")
    assert asked_eu.status_code == 200 and placement(asked_eu) == ("us-east-1", "us-1")
    eu_only = grid2.tenant("eu-only", ["eu-west-1"], home="eu-west-1")
    r = embed(eu_only)  # its only region is drained
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "no_healthy_replica"
    assert r.headers["retry-after"] == "1"
    assert grid2.calls() == {"eu-1": [], "us-1": ["count", "embed"]}


@pytest.mark.parametrize("grid2", [True], indirect=True)
def test_a_failed_replica_fails_over_with_exactly_one_usage_row(grid2: Grid2) -> None:
    anywhere = grid2.tenant("anywhere", None, home="local")
    r = embed(anywhere)  # eu-1 counts, then fails to embed: us-1 embeds
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["embedding"] == [0.25, 0.5, 0.75]
    assert placement(r) == ("us-east-1", "us-1")
    assert grid2.calls() == {"eu-1": ["count", "embed"], "us-1": ["embed"]}
    [row] = usage_rows(grid2.server, expect=1)
    assert (row["region"], row["status"], row["prompt_tokens"], row["endpoint"]) == (
        "us-east-1",
        200,
        2,
        "embeddings",
    )
    assert usage_rows(grid2.server, expect=2, timeout_s=0.3) == [row]
    assert grid2.server.state.grid.router.failovers == {EMB: 1}
    # eu-west-1 only: nowhere to fail over to.
    eu_only = grid2.tenant("eu-only", ["eu-west-1"], home="eu-west-1")
    failed = embed(eu_only)
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "no_healthy_replica"
    rows = usage_rows(grid2.server, expect=2)
    assert [(x["region"], x["status"], x["finish_reason"]) for x in rows[1:]] == [
        ("eu-west-1", 503, "error")
    ]


def test_dashscope_embeddings_are_routed_the_same_way(grid2: Grid2) -> None:
    us_only = grid2.tenant("us-only", ["us-east-1"], home="us-east-1")
    body: dict[str, Any] = {"model": EMB, "input": {"texts": ["hello world"]}}
    r = us_only.post(DS_PATH, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["output"]["embeddings"] == [{"text_index": 0, "embedding": [0.25, 0.5, 0.75]}]
    assert placement(r) == ("us-east-1", "us-1")
    [row] = usage_rows(grid2.server, expect=1)
    assert (row["region"], row["endpoint"], row["request_id"]) == (
        "us-east-1",
        "embeddings",
        r.json()["request_id"],
    )
    refused = us_only.post(DS_PATH, json=body, headers={"X-Modelgrid-Region": "eu-west-1"})
    assert refused.status_code == 403
    assert refused.json() == {
        "request_id": refused.headers["x-request-id"],
        "code": "AccessDenied",
        "message": "This API key may not use the region 'eu-west-1' (X-Modelgrid-Region).",
    }
    assert grid2.calls() == {"eu-1": [], "us-1": ["count", "embed"]}


def test_models_and_readiness_list_the_routed_embedding_model_once(grid2: Grid2) -> None:
    anywhere = grid2.tenant("anywhere", None, home="local")
    models = anywhere.get("/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["fake-model", EMB]
    ready = grid2.admin.get("/health/ready").json()
    assert (ready["status"], ready["models"]) == ("ready", {"fake-model": True, EMB: True})


def test_an_upstream_replica_is_a_modelgrid_engine_worker(tmp_path: Path) -> None:
    """A packaged embedding model deployed as an ``upstream`` replica is served by the
    ``modelgrid engine`` worker at its URL (its ``/internal/embeddings`` calls), with the
    default upstream factory."""
    model = "all-minilm-l6-v2"  # in the catalog: 384 dimensions
    worker_app = create_worker_app(lambda: FakeEmbeddingEngine(model, dimensions=384))
    worker = AppThread(worker_app, ready_path="/health/ready").start()
    t = Topology(
        regions=(Region("local", "Local"), Region("eu-west-1", "Ireland", "IE")),
        deployments=(
            Deployment(model, "eu-west-1", (Replica("eu-w", "upstream", f"{worker.base_url}/v1"),)),
        ),
        gateway_region="local",
    )
    (tmp_path / "topology.toml").write_text(dumps(t), encoding="utf-8")
    settings = make_settings(tmp_path, topology_file=tmp_path / "topology.toml")
    server = ThreadServer(settings, lambda _s: [FakeEngine()]).start()
    key = create_key(settings.database_url, name="test").plaintext
    try:
        with httpx.Client(base_url=server.base_url, timeout=20) as c:
            r = c.post(
                "/v1/embeddings",
                json={"model": model, "input": ["hello world", "w " * 17]},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert r.status_code == 400, r.text  # the worker's window: 16 of the fake's words
            assert r.json()["error"]["code"] == "context_length_exceeded"
            r = c.post(
                "/v1/embeddings",
                json={"model": model, "input": "hello world"},
                headers={"Authorization": f"Bearer {key}"},
            )
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["embedding"] == fake_vector("hello world", 384)
        assert placement(r) == ("eu-west-1", "eu-w")
        [row] = usage_rows(server, expect=1)
        assert (row["model"], row["region"], row["prompt_tokens"]) == (model, "eu-west-1", 2)
    finally:
        server.stop()
        worker.stop()
