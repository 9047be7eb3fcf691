"""The control plane checks names against what exists, audits each change, and calls its
hooks; a topology change made on the file reaches a live grid."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from modelgrid.control import ControlPlane, FileTopology, Hooks, LiveTopology
from modelgrid.core.errors import ConflictError, InvalidRequestError, NotFoundError
from modelgrid.protocol.admin import KeyCreate, KeyPatch, PriceCreate, WorkspaceCreate
from modelgrid.protocol.topology import DeploymentSpec, RegionCreate, RegionPatch, ReplicaSpec
from modelgrid.routing import Grid
from modelgrid.routing.topology import Region, Topology, default_topology, load, with_local_models
from modelgrid.tenancy import audit
from tests.databases import with_sessions
from tests.support import SEALER

MODEL = "m1"


def _topology() -> Topology:
    """Singapore (the gateway, serving m1 in-process) and Ireland."""
    t = Topology(
        regions=(Region("ap-southeast-1", "Singapore", "SG"), Region("eu-west-1", "Ireland", "IE")),
        gateway_region="ap-southeast-1",
    )
    return with_local_models(t, [MODEL])


class Calls:
    def __init__(self) -> None:
        self.principals = 0
        self.prices = 0

    def hooks(self) -> Hooks:
        async def prices() -> None:
            self.prices += 1

        def principals() -> None:
            self.principals += 1

        return Hooks(principals, prices)


def _plane(sessions: Any, path: Path, calls: Calls | None = None) -> ControlPlane:
    store = FileTopology(path, _topology(), [MODEL])
    return ControlPlane(
        sessions,
        store,
        served_models=lambda: ["emb"],
        hooks=(calls or Calls()).hooks(),
        sealer=SEALER,
    )


def _refused(exc: pytest.ExceptionInfo[Any]) -> tuple[str, str | None, str]:
    e = exc.value
    return e.param, e.code, e.message


def test_workspace_names_and_regions_are_checked(tmp_path: Path, database_url: str) -> None:
    async def go(sessions: Any) -> dict[str, Any]:
        plane = _plane(sessions, tmp_path / "t.toml")
        out: dict[str, Any] = {}
        for name, body in [
            ("region", WorkspaceCreate(name="a", allowed_regions=["eu-west-2"])),
            ("home", WorkspaceCreate(name="a", home_region="us-east-1")),
            ("jurisdiction", WorkspaceCreate(name="a", allowed_jurisdictions=["DE"])),
            ("slash", WorkspaceCreate(name="a/b")),
            ("id_shaped", WorkspaceCreate(name="ws_0123456789abcdef")),
            ("ws_prefix", WorkspaceCreate(name="ws_foo")),
        ]:
            with pytest.raises(InvalidRequestError) as exc:
                await plane.workspaces.create(body, actor="t")
            out[name] = _refused(exc)
        ws = await plane.workspaces.create(WorkspaceCreate(name="plain"), actor="t")
        irl = await plane.workspaces.create(
            WorkspaceCreate(
                name="irl", allowed_regions=["eu-west-1"], allowed_jurisdictions=["IE"]
            ),
            actor="t",
        )
        out["homes"] = (ws.home_region, irl.home_region)
        with pytest.raises(InvalidRequestError) as exc:
            await plane.workspaces.update("irl", _patch(home_region="ap-southeast-1"), actor="t")
        out["home_outside"] = _refused(exc)
        return out

    out = with_sessions(database_url, go)
    assert out["region"] == (
        "allowed_regions",
        "unknown_region",
        "Unknown region 'eu-west-2'; known: ap-southeast-1, eu-west-1.",
    )
    assert out["home"][:2] == ("home_region", "unknown_region")
    assert out["jurisdiction"] == (
        "allowed_jurisdictions",
        "unknown_jurisdiction",
        "Unknown jurisdiction 'DE' (no region lies in it); known: IE, SG.",
    )
    assert out["slash"][0] == out["id_shaped"][0] == out["ws_prefix"][0] == "name"
    assert out["homes"] == ("ap-southeast-1", "eu-west-1")  # the gateway's; the first allowed
    assert out["home_outside"][0] == "home_region"


def _patch(**fields: Any) -> Any:
    from modelgrid.protocol.admin import WorkspacePatch

    return WorkspacePatch(**fields)


def test_key_scopes_name_served_models_and_the_workspace_s_regions(
    tmp_path: Path, database_url: str
) -> None:
    calls = Calls()

    async def go(sessions: Any) -> dict[str, Any]:
        plane = _plane(sessions, tmp_path / "t.toml", calls)
        await plane.workspaces.create(
            WorkspaceCreate(name="irl", allowed_regions=["eu-west-1"]), actor="t"
        )
        out: dict[str, Any] = {}
        for name, body in [
            ("model", KeyCreate(allowed_models=["gpt-4"])),
            ("region", KeyCreate(allowed_regions=["ap-southeast-1"])),  # outside the workspace
            ("unknown_region", KeyCreate(allowed_regions=["mars-1"])),
        ]:
            with pytest.raises(InvalidRequestError) as exc:
                await plane.keys.create("irl", body, actor="t")
            out[name] = _refused(exc)
        with pytest.raises(NotFoundError) as missing:
            await plane.keys.create_in("irll", KeyCreate(), actor="t")
        out["typo"] = missing.value.message
        key = await plane.keys.create("irl", KeyCreate(allowed_models=[MODEL, "emb"]), actor="t")
        out["principals_after_create"] = calls.principals
        await plane.keys.update(key.id, KeyPatch(name="renamed"), actor="t")
        await plane.keys.update(key.id, KeyPatch(name="renamed"), actor="t")  # no change
        await plane.keys.revoke(key.id, actor="t")
        out["principals"] = calls.principals
        return out

    out = with_sessions(database_url, go)
    assert out["model"] == (
        "allowed_models",
        "unknown_model",
        "Unknown model 'gpt-4' (no deployment serves it); known: emb, m1.",
    )
    assert out["region"][0] == "allowed_regions" and "outside workspace" in out["region"][2]
    assert out["unknown_region"][:2] == ("allowed_regions", "unknown_region")
    assert out["typo"].startswith("There is no workspace 'irll'")
    assert (out["principals_after_create"], out["principals"]) == (0, 2)


def test_prices_name_a_served_model_and_a_known_region(tmp_path: Path, database_url: str) -> None:
    calls = Calls()

    async def go(sessions: Any) -> list[Any]:
        plane = _plane(sessions, tmp_path / "t.toml", calls)
        refused = []
        for body in [
            PriceCreate(model="gpt-4", input_micros_per_1m=1, output_micros_per_1m=1),
            PriceCreate(
                model=MODEL, region="mars-1", input_micros_per_1m=1, output_micros_per_1m=1
            ),
        ]:
            with pytest.raises(InvalidRequestError) as exc:
                await plane.prices.add(body, actor="t")
            refused.append(_refused(exc)[:2])
        body = PriceCreate(
            model=MODEL, region="eu-west-1", input_micros_per_1m=5, output_micros_per_1m=7
        )
        p = await plane.prices.add(body, actor="t")
        return [refused, (p.model, p.region, p.output_micros_per_1m), calls.prices]

    refused, added, prices_calls = with_sessions(database_url, go)
    assert refused == [("model", "unknown_model"), ("region", "unknown_region")]
    assert added == (MODEL, "eu-west-1", 7)
    assert prices_calls == 1


def test_topology_changes_write_the_file_and_the_audit_log(
    tmp_path: Path, database_url: str
) -> None:
    path = tmp_path / "t.toml"

    async def go(sessions: Any) -> dict[str, Any]:
        plane = _plane(sessions, path)
        out: dict[str, Any] = {}
        await plane.topology.add_region(
            RegionCreate(id="us-east-1", jurisdiction="US", latency_ms={"eu-west-1": 80}),
            actor="cli:ann",
        )
        await plane.topology.put_deployment(
            DeploymentSpec(
                model=MODEL,
                region="us-east-1",
                replicas=[ReplicaSpec(base_url="http://10.0.0.9:8000/v1", max_concurrency=8)],
            ),
            actor="cli:ann",
        )
        with pytest.raises(InvalidRequestError) as local:  # residency: local runs in Singapore
            await plane.topology.put_deployment(
                DeploymentSpec(
                    model="emb", region="eu-west-1", replicas=[ReplicaSpec(kind="local")]
                ),
                actor="cli:ann",
            )
        out["local"] = local.value.code
        await plane.workspaces.create(
            WorkspaceCreate(name="us", allowed_regions=["us-east-1"]), actor="t"
        )
        with pytest.raises(ConflictError) as named:
            await plane.topology.remove_region("us-east-1", actor="cli:ann")
        out["named"] = named.value.message
        await plane.topology.update_region("eu-west-1", RegionPatch(enabled=False), actor="cli:ann")
        entries, _ = await audit.list_entries(sessions, limit=10)
        out["audit"] = [(e.actor, e.action, e.target) for e in reversed(entries)]
        return out

    out = with_sessions(database_url, go)
    t = load(path)
    assert [r.id for r in t.regions] == ["ap-southeast-1", "eu-west-1", "us-east-1"]
    assert t.region("eu-west-1") == Region("eu-west-1", "Ireland", "IE", enabled=False)
    [d] = [d for d in t.deployments if d.region == "us-east-1"]
    assert [(r.kind, r.base_url, r.max_concurrency) for r in d.replicas] == [
        ("upstream", "http://10.0.0.9:8000/v1", 8)
    ]
    assert t.latency("us-east-1", "eu-west-1") == 80.0
    assert out["local"] == "invalid_topology"
    assert "workspace(s) us" in out["named"]
    assert out["audit"] == [
        ("cli:ann", "region.create", "region:us-east-1"),
        ("cli:ann", "deployment.put", f"deployment:us-east-1/{MODEL}"),
        ("t", "workspace.create", out["audit"][2][2]),
        ("cli:ann", "region.update", "region:eu-west-1"),
    ]


async def test_a_live_grid_follows_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.toml"
    grid = Grid(_topology())
    applied: list[int] = []
    live = LiveTopology(grid, path, lambda: applied.append(1))
    assert not await live.reload_if_changed()  # no file yet: the live topology stands
    cli = FileTopology(path, grid.topology, [MODEL])
    await cli.change(lambda t: t.with_region(Region("us-east-1", "Virginia", "US")))
    assert await live.reload_if_changed()
    assert grid.topology.region("us-east-1") == Region("us-east-1", "Virginia", "US")
    assert grid.topology.deployment(MODEL, "ap-southeast-1") is not None
    assert not await live.reload_if_changed()  # nothing new
    path.write_text("regions = [", encoding="utf-8")  # broken by hand
    with caplog.at_level(logging.ERROR, logger="modelgrid.control"):
        assert not await live.reload_if_changed()
        assert not await live.reload_if_changed()
    assert len(caplog.records) == 1 and "not valid" in caplog.records[0].getMessage()
    assert grid.topology.region("us-east-1") is not None  # kept
    await live.change(lambda t: t.without_region("us-east-1"))  # the gateway's own write
    assert not await live.reload_if_changed()  # is not reloaded as if it were new
    assert load(path).region("us-east-1") is None
    assert applied == [1, 1]
    await grid.aclose()


async def test_concurrent_file_writers_lose_no_change(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    base = default_topology([MODEL])
    writers = [FileTopology(path, base, [MODEL]) for _ in range(8)]
    await asyncio.gather(
        *(
            w.change(lambda t, i=i: t.with_region(Region(f"r-{i}", f"R{i}")))
            for i, w in enumerate(writers)
        )
    )
    assert sorted(r.id for r in load(path).regions) == ["local", *(f"r-{i}" for i in range(8))]
