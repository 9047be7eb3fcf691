"""Routing at the API edge over a real uvicorn server: region headers, usage region,
residency (403), unknown regions (400), failover and 503 with ``Retry-After`` (JSON even for
streams), draining, and the topology admin API persisting to the topology file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelgrid.routing import topology as topo
from tests.databases import BOTH_DATABASES
from tests.support import ThreadServer, create_key, free_port, usage_rows, usage_rows_matching

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}]}


OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


class Client:
    def __init__(self, server: ThreadServer, key: str) -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=20
        )
        OPEN.append(self.http)

    def chat(self, region: str | None = None, stream: bool = False) -> httpx.Response:
        headers = {"X-Modelgrid-Region": region} if region else {}
        return self.http.post(
            "/v1/chat/completions", json={**CHAT, "stream": stream}, headers=headers
        )

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, f"/admin/v1{path}", **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.admin(method, path, **kw)
        assert r.status_code in (200, 204), r.text
        return r.json() if r.status_code == 200 else None


@pytest.fixture
def admin(fake_server: ThreadServer) -> Client:
    key = create_key(fake_server.settings.database_url, role="admin", workspace="admin").plaintext
    return Client(fake_server, key)


def tenant(admin: Client, name: str, regions: list[str] | None, home: str = "local") -> Client:
    ws = admin.ok(
        "POST", "/workspaces", json={"name": name, "allowed_regions": regions, "home_region": home}
    )
    created = admin.ok("POST", f"/workspaces/{ws['id']}/keys", json={"name": name})
    return Client(admin.server, created["key"])


def metric_values(c: Client) -> dict[str, float]:
    """``/metrics`` as {series with labels: value}."""
    text = c.http.get("/metrics").text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def test_every_answer_names_its_region_and_replica_and_usage_carries_both(
    fake_server: ThreadServer, tmp_path: Path
) -> None:
    c = Client(fake_server, fake_server.api_key)  # type: ignore[attr-defined]
    for stream in (False, True):
        r = c.chat(stream=stream)
        assert r.status_code == 200
        assert r.headers["x-modelgrid-region"] == "local"
        assert r.headers["x-modelgrid-replica"] == "local/fake-model/local"
    rows = usage_rows(fake_server, expect=2)
    assert [row["region"] for row in rows] == ["local", "local"]
    assert [row["replica"] for row in rows] == ["local/fake-model/local"] * 2


@BOTH_DATABASES
def test_residency_403s_and_unknown_region_400(admin: Client) -> None:
    admin.ok("POST", "/regions", json={"id": "eu-west-1"})  # a region without the model
    eu_only = tenant(admin, "eu-only", ["eu-west-1"], home="eu-west-1")
    for stream in (False, True):
        r = eu_only.chat(stream=stream)
        assert error(r) == (403, "region_not_allowed")
        assert r.json()["error"]["type"] == "permission_error"
    local_only = tenant(admin, "local-only", ["local"])
    assert error(local_only.chat("eu-west-1")) == (403, "region_not_allowed")
    assert local_only.chat("local").status_code == 200
    anywhere = tenant(admin, "anywhere", None)
    assert error(anywhere.chat("mars-1")) == (400, "unknown_region")


def test_admin_adds_a_region_failover_stays_allowed_and_dead_regions_503(
    admin: Client, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    region = admin.ok(
        "POST",
        "/regions",
        json={
            "id": "eu-west-1",
            "name": "Ireland",
            "jurisdiction": "IE",
            "latency_ms": {"local": 120},
        },
    )
    assert (region["id"], region["latency_ms"], region["models"]) == ("eu-west-1", 120.0, [])
    assert error(admin.admin("POST", "/regions", json={"id": "eu-west-1"})) == (409, "conflict")
    dep = admin.ok(
        "POST",
        "/deployments",
        json={
            "model": "fake-model",
            "region": "eu-west-1",
            "replicas": [{"id": "eu-1", "base_url": dead}],
        },
    )
    assert [r["id"] for r in dep["replicas"]] == ["eu-1"]
    assert [r["id"] for r in admin.ok("GET", "/regions")["data"]] == ["local", "eu-west-1"]

    # The change is live and persisted.
    saved = topo.load(tmp_path / "topology.toml")
    assert saved.deployment("fake-model", "eu-west-1") is not None

    # Asked for eu-west-1, allowed both: the dead replica is skipped, local answers.
    both = tenant(admin, "both", ["local", "eu-west-1"])
    r = both.chat("eu-west-1")
    assert r.status_code == 200
    assert (r.headers["x-modelgrid-region"], r.headers["x-modelgrid-replica"]) == (
        "local",
        "local/fake-model/local",
    )
    # Allowed only eu-west-1: never sent to local; 503 with Retry-After, JSON for streams too.
    eu_only = tenant(admin, "eu", ["eu-west-1"], home="eu-west-1")
    for stream in (False, True):
        r = eu_only.chat(stream=stream)
        assert error(r) == (503, "no_healthy_replica"), r.text
        assert int(r.headers["retry-after"]) >= 1
    # Recorded, but nothing billed: no replica ever took the prompt.
    failed = usage_rows_matching(admin.server, status=503)
    assert failed and all(
        (row["prompt_tokens"], row["completion_tokens"], row["cost_micros"]) == (0, 0, 0)
        for row in failed
    )
    # Enough failures opened the breaker: the admin view shows it.
    state = admin.ok("GET", "/deployments/eu-west-1/fake-model")["replicas"][0]["state"]
    assert state["failed"] >= 2 and state["last_error"]
    # ... and so do the routing series of /metrics (read from the same live state).
    series = metric_values(admin)
    eu = 'region="eu-west-1",replica="eu-1"}'
    local = 'region="local",replica="local/fake-model/local"}'
    requests = 'modelgrid_replica_requests_total{model="fake-model",outcome='
    assert series[f'{requests}"failure",{eu}'] == state["failed"]
    assert series[f'{requests}"success",{local}'] >= 1
    assert series[f'modelgrid_replica_in_flight{{model="fake-model",{eu}'] == 0
    breaker = {"closed": 0, "half_open": 1, "open": 2}[state["breaker"]]
    assert series[f'modelgrid_replica_circuit_state{{model="fake-model",{eu}'] == breaker
    assert series['modelgrid_failovers_total{model="fake-model"}'] == 1  # the "both" request

    # Removing it: a region with deployments cannot go, nor one that workspaces name; then
    # both can.
    assert error(admin.admin("DELETE", "/regions/eu-west-1")) == (409, "conflict")
    admin.ok("DELETE", "/deployments/eu-west-1/fake-model")
    named = admin.admin("DELETE", "/regions/eu-west-1")
    assert error(named) == (409, "conflict") and "both, eu" in named.json()["error"]["message"]
    for ws in ("both", "eu"):
        admin.ok(
            "PATCH",
            f"/workspaces/{ws}",
            json={"allowed_regions": ["local"], "home_region": "local"},
        )
    admin.ok("DELETE", "/regions/eu-west-1")
    assert topo.load(tmp_path / "topology.toml").region("eu-west-1") is None
    audit = admin.ok("GET", "/audit")["data"]
    actions = {a["action"] for a in audit}
    assert {"region.create", "deployment.put", "deployment.delete", "region.delete"} <= actions


def test_draining_the_only_region_503s_until_reenabled(admin: Client) -> None:
    c = Client(admin.server, admin.server.api_key)  # type: ignore[attr-defined]
    drained = admin.ok("PATCH", "/regions/local", json={"enabled": False})
    assert drained["enabled"] is False and drained["replicas_available"] == 0
    assert error(c.chat()) == (503, "no_healthy_replica")
    admin.ok("PATCH", "/regions/local", json={"enabled": True})
    assert c.chat().status_code == 200


def test_bad_topology_changes_are_400_and_unknown_ones_404(admin: Client) -> None:
    cases = [
        (
            "POST",
            "/deployments",
            {"model": "m", "region": "nowhere", "replicas": [{"kind": "local"}]},
            400,
        ),
        (
            "POST",
            "/deployments",
            {"model": "m", "region": "local", "replicas": [{"kind": "upstream"}]},
            400,
        ),
        (  # this gateway runs no in-process "foo": a local replica could never answer
            "POST",
            "/deployments",
            {"model": "foo", "region": "local", "replicas": [{"kind": "local"}]},
            400,
        ),
        ("POST", "/regions", {"id": "Bad Id"}, 400),
        ("PATCH", "/regions/nowhere", {"enabled": False}, 404),
        ("GET", "/deployments/local/nope", None, 404),
        ("DELETE", "/regions/local", None, 409),  # the gateway's own region
    ]
    for method, path, body, status in cases:
        r = admin.admin(method, path, json=body)
        assert r.status_code == status, (path, r.text)


def test_topology_routes_need_an_admin_key(fake_server: ThreadServer) -> None:
    c = Client(fake_server, fake_server.api_key)  # type: ignore[attr-defined]
    for path in ("/regions", "/deployments"):
        assert c.admin("GET", path).status_code == 403
        assert httpx.get(f"{fake_server.base_url}/admin/v1{path}").status_code == 401


def test_a_topology_file_is_loaded_at_start(tmp_path: Path, database_url: str) -> None:
    from modelgrid.engines.fake import FakeEngine
    from tests.conftest import make_settings

    path = tmp_path / "grid.toml"
    path.write_text(
        'gateway_region = "ap-southeast-1"\n'
        '[[regions]]\nid = "ap-southeast-1"\nname = "Singapore"\n'
        '[[deployments]]\nmodel = "fake-model"\nregion = "ap-southeast-1"\n'
        '[[deployments.replicas]]\nid = "sg-local"\nkind = "local"\n'
    )
    settings = make_settings(tmp_path, database_url, topology_file=path)
    server = ThreadServer(settings, lambda _s: [FakeEngine(), FakeEngine("other-model")])
    key = create_key(settings.database_url, name="t").plaintext
    server.start()
    try:
        c = Client(server, key)
        r = c.chat()
        assert (r.headers["x-modelgrid-region"], r.headers["x-modelgrid-replica"]) == (
            "ap-southeast-1",
            "sg-local",
        )
        # A loaded model the file does not mention is served from the gateway's region.
        r = c.http.post("/v1/chat/completions", json={**CHAT, "model": "other-model"})
        assert r.headers["x-modelgrid-replica"] == "ap-southeast-1/other-model/local"
        models = [m["id"] for m in c.http.get("/v1/models").json()["data"]]
        assert models == ["fake-model", "other-model"]
    finally:
        server.stop()
    assert topo.load(path).gateway_region == "ap-southeast-1"  # the file is left as it was


def test_embeddings_run_in_the_gateway_region_and_respect_residency(
    tmp_path: Path, database_url: str
) -> None:
    from modelgrid.engines.fake import FakeEngine
    from modelgrid.engines.fake_embedding import FakeEmbeddingEngine
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, database_url)
    server = ThreadServer(settings, lambda _s: [FakeEngine(), FakeEmbeddingEngine()])
    admin_key = create_key(settings.database_url, role="admin", workspace="admin").plaintext
    server.start()
    try:
        admin = Client(server, admin_key)
        body = {"model": "fake-embedding", "input": "hello"}
        ok = tenant(admin, "here", ["local"]).http.post("/v1/embeddings", json=body)
        assert ok.status_code == 200 and ok.headers["x-modelgrid-region"] == "local"
        admin.ok("POST", "/regions", json={"id": "eu-west-1"})  # no embedding model there
        away = tenant(admin, "away", ["eu-west-1"], home="eu-west-1")
        assert error(away.http.post("/v1/embeddings", json=body)) == (403, "region_not_allowed")
    finally:
        server.stop()


@BOTH_DATABASES
def test_jurisdictions_narrow_where_requests_and_embeddings_may_run(
    tmp_path: Path, database_url: str
) -> None:
    """Workspace rules by jurisdiction: only regions whose ``jurisdiction`` is allowed serve
    (a region naming none never does), keys may narrow but not widen, embeddings (run in the
    gateway's region) obey the same rule."""
    from modelgrid.engines.fake import FakeEngine
    from modelgrid.engines.fake_embedding import FakeEmbeddingEngine
    from tests.conftest import make_settings

    dead = f"http://127.0.0.1:{free_port()}/v1"
    path = tmp_path / "grid.toml"
    path.write_text(
        'gateway_region = "ap-southeast-1"\n'
        '[[regions]]\nid = "ap-southeast-1"\njurisdiction = "sg"\n'
        '[[regions]]\nid = "eu-central-1"\njurisdiction = "DE"\n'
        '[[regions]]\nid = "lab"\n'
        '[[deployments]]\nmodel = "fake-model"\nregion = "ap-southeast-1"\n'
        '[[deployments.replicas]]\nid = "sg-local"\nkind = "local"\n'
        '[[deployments]]\nmodel = "fake-model"\nregion = "eu-central-1"\n'
        f'[[deployments.replicas]]\nid = "de-1"\nbase_url = "{dead}"\n'
        '[[deployments]]\nmodel = "fake-model"\nregion = "lab"\n'
        f'[[deployments.replicas]]\nid = "lab-1"\nbase_url = "{dead}"\n'
    )
    settings = make_settings(tmp_path, database_url, topology_file=path)
    server = ThreadServer(settings, lambda _s: [FakeEngine(), FakeEmbeddingEngine()])
    admin = Client(
        server, create_key(settings.database_url, role="admin", workspace="admin").plaintext
    )
    server.start()
    try:

        def workspace(name: str, codes: list[str] | None, home: str) -> str:
            body = {"name": name, "allowed_jurisdictions": codes, "home_region": home}
            return str(admin.ok("POST", "/workspaces", json=body)["id"])

        def key(ws: str, **scope: Any) -> Client:
            created = admin.ok("POST", f"/workspaces/{ws}/keys", json={"name": "k", **scope})
            return Client(server, created["key"])

        embed = {"model": "fake-embedding", "input": "hello"}
        sg = key(workspace("sg", ["SG"], "lab"))  # home "lab" names no jurisdiction
        for _ in range(3):
            r = sg.chat()
            assert (r.status_code, r.headers["x-modelgrid-region"]) == (200, "ap-southeast-1")
        assert error(sg.chat("lab")) == (403, "region_not_allowed")
        assert error(sg.chat("eu-central-1")) == (403, "region_not_allowed")
        assert sg.http.post("/v1/embeddings", json=embed).status_code == 200

        de_ws = workspace("de", ["DE"], "eu-central-1")
        de = key(de_ws)  # its only region's replica is down: 503, never Singapore or lab
        for stream in (False, True):
            r = de.chat(stream=stream)
            assert error(r) == (503, "no_healthy_replica")
        assert error(de.http.post("/v1/embeddings", json=embed)) == (403, "region_not_allowed")
        wider = admin.admin(
            "POST", f"/workspaces/{de_ws}/keys", json={"allowed_jurisdictions": ["DE", "SG"]}
        )
        assert (wider.status_code, wider.json()["error"]["param"]) == (400, "allowed_jurisdictions")

        # Region codes follow the same rule: ASCII codes, upper-cased; "ß" never becomes "SS".
        for code in (" IE", "I E", "\u00df", "IE\n", "--", "X"):
            r = admin.admin("POST", "/regions", json={"id": "bad-1", "jurisdiction": code})
            assert (r.status_code, r.json()["error"]["param"]) == (400, "jurisdiction"), code
        made = admin.ok("POST", "/regions", json={"id": "ie-1", "jurisdiction": "ie"})
        assert made["jurisdiction"] == "IE"
        r = admin.admin("PATCH", "/regions/ie-1", json={"jurisdiction": " US "})
        assert (r.status_code, r.json()["error"]["param"]) == (400, "jurisdiction")

        anywhere = workspace("any", None, "ap-southeast-1")
        narrowed = key(anywhere, allowed_jurisdictions=["de"])
        assert error(narrowed.chat()) == (503, "no_healthy_replica")
        assert key(anywhere).chat().headers["x-modelgrid-region"] == "ap-southeast-1"
    finally:
        server.stop()
