"""``modelgrid regions`` and ``modelgrid deployments``: the topology, listed and changed.

Listing reads the topology file (``MODELGRID_TOPOLOGY_FILE``, else
``<data_dir>/topology.toml``, which the admin API keeps up to date) or shows the embedded
default (region ``local`` with the configured models). ``add`` / ``set`` / ``remove`` /
``put`` change the file through the control plane (validated, audited as ``cli:<os user>``);
a running gateway loads the changed file within a second. With
``MODELGRID_CONTROL__TOPOLOGY_STORE=database`` both read and change the topology stored in
the database instead (``docs/gateways.md``), which every gateway sharing it makes live. A running server's live view,
with breaker states and loads, is ``GET /admin/v1/regions`` and ``GET /admin/v1/deployments``.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from modelgrid.cli.common import (
    actor,
    build,
    console,
    control_run,
    err_console,
    read_run,
    settings,
)

JSON = typer.Option(False, "--json", help="Print JSON.")
regions_app = typer.Typer(
    help="List the regions (no subcommand), or change them.", invoke_without_command=True
)
deployments_app = typer.Typer(
    help="List the deployments (no subcommand), or change them.", invoke_without_command=True
)


def _topology() -> tuple[Any, str]:
    return topology_or_exit(settings())


def topology_or_exit(s: Any) -> tuple[Any, str]:
    """The topology the settings name (and where it came from): the database's with
    ``control.topology_store = "database"`` once a gateway or a change stored one, else the
    file's; a bad or unreadable file ends the command with one line naming the file and the
    problem (status 1)."""
    if s.control.topology_store == "database":
        from modelgrid.control.topology_db import read_document

        version, stored = read_run(read_document)
        if stored is not None:
            return stored, f"database (version {version})"
    return _file_topology(s)


def _file_topology(s: Any) -> tuple[Any, str]:
    from modelgrid.routing import topology as topo

    if s.topology_file is not None and str(s.topology_file) in ("", "."):
        err_console.print("[red]MODELGRID_TOPOLOGY_FILE is set but empty: name a TOML file[/]")
        raise typer.Exit(1)
    path = s.topology_path
    if s.topology_file is None and not path.exists():
        models = [*s.engine.models, *(u.model for u in s.all_upstreams())]
        return topo.default_topology(dict.fromkeys(models)), "embedded default"
    try:
        return topo.load(path), str(path)
    except (OSError, topo.TopologyError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        err_console.print(
            f"[red]topology file {escape(str(path))}: {escape(reason)}[/]",
            highlight=False,
        )
        raise typer.Exit(1) from None


@regions_app.callback()
def regions(ctx: typer.Context, as_json: bool = JSON) -> None:
    """List the regions: jurisdiction, location, expected latency from this gateway, models."""
    if ctx.invoked_subcommand is None:
        _print_regions(as_json)


def _print_regions(as_json: bool) -> None:
    t, source = _topology()
    rows = [
        {
            "id": r.id,
            "name": r.name,
            "jurisdiction": r.jurisdiction,
            "lat": r.lat,
            "lon": r.lon,
            "enabled": r.enabled,
            "gateway": r.id == t.gateway_region,
            "latency_ms": t.latency(t.gateway_region, r.id),
            "models": [d.model for d in t.deployments if d.region == r.id],
        }
        for r in t.regions
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(
        "region", "name", "jurisdiction", "lat, lon", "latency ms", "models", title=source
    )
    for row in rows:
        where = "" if row["lat"] is None else f"{row['lat']:.2f}, {row['lon']:.2f}"
        latency = "" if row["latency_ms"] is None else f"{row['latency_ms']:.0f}"
        name = row["name"] + (" (gateway)" if row["gateway"] else "")
        name += "" if row["enabled"] else " [drained]"
        table.add_row(
            row["id"], name, row["jurisdiction"], where, latency, ", ".join(row["models"])
        )
    console.print(table)


@deployments_app.callback()
def deployments(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", help="Only this model."),
    as_json: bool = JSON,
) -> None:
    """List the deployments (a model in a region) and their replicas."""
    if ctx.invoked_subcommand is None:
        _print_deployments(model, as_json)


def _print_deployments(model: str | None, as_json: bool) -> None:
    t, source = _topology()
    rows = [
        {
            "model": d.model,
            "region": d.region,
            "replica": r.id,
            "kind": r.kind,
            "base_url": r.base_url,
            "upstream_model": r.upstream_model,
            "max_concurrency": r.max_concurrency,
            "attempts": r.attempts,
            "prefix_header": r.prefix_header,
        }
        for d, r in t.replicas()
        if model is None or d.model == model
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("model", "region", "replica", "kind", "endpoint", "max conc.", title=source)
    for row in rows:
        endpoint = row["base_url"] or "in-process"
        if row["upstream_model"]:
            endpoint += f" ({row['upstream_model']})"
        if row["attempts"] > 1:
            endpoint += f" (a pool: {row['attempts']} attempts)"
        conc = "" if row["max_concurrency"] is None else str(row["max_concurrency"])
        table.add_row(row["model"], row["region"], row["replica"], row["kind"], endpoint, conc)
    console.print(table)


@regions_app.command("list")
def list_regions(as_json: bool = JSON) -> None:
    """List the regions (as ``modelgrid regions``)."""
    _print_regions(as_json)


@deployments_app.command("list")
def list_deployments(
    model: str = typer.Option(None, "--model", help="Only this model."), as_json: bool = JSON
) -> None:
    """List the deployments (as ``modelgrid deployments``)."""
    _print_deployments(model, as_json)


# --- changes ---------------------------------------------------------------------------------


def _latency(values: list[str] | None) -> dict[str, float] | None:
    """``["eu-west-1=160", …]`` → ``{"eu-west-1": 160.0, …}``."""
    if not values:
        return None
    table: dict[str, float] = {}
    for v in values:
        peer, sep, ms = v.partition("=")
        try:
            table[peer.strip()] = float(ms)
        except ValueError:
            sep = ""
        if not sep:
            raise typer.BadParameter(f"{v!r}: give REGION=MILLISECONDS", param_hint="--latency")
    return table


LATENCY = typer.Option(
    None, "--latency", help="Expected RTT to another region, REGION=MS (repeatable)."
)


@regions_app.command("add")
def add_region(
    region_id: str = typer.Argument(..., help="Region id, e.g. eu-west-1."),
    name: str = typer.Option("", "--name", help="Display name."),
    jurisdiction: str = typer.Option("", "--jurisdiction", help="ISO 3166 country or bloc."),
    lat: float = typer.Option(None, "--lat", help="Latitude (distance-based latency)."),
    lon: float = typer.Option(None, "--lon", help="Longitude."),
    drained: bool = typer.Option(False, "--drained", help="Add it drained (no requests)."),
    latency: list[str] = LATENCY,
) -> None:
    """Add a region to the topology."""
    from modelgrid.protocol.topology import RegionCreate

    fields = {"latency_ms": _latency(latency) or {}, "lat": lat, "lon": lon}
    body = build(
        RegionCreate,
        id=region_id,
        name=name,
        jurisdiction=jurisdiction,
        enabled=not drained,
        **fields,
    )
    control_run(lambda c: c.topology.add_region(body, actor=actor()))
    console.print(f"added region {region_id}")


@regions_app.command("set")
def set_region(
    region_id: str = typer.Argument(..., help="Region id."),
    name: str = typer.Option(None, "--name", help="Display name."),
    jurisdiction: str = typer.Option(None, "--jurisdiction", help="ISO 3166 country or bloc."),
    lat: float = typer.Option(None, "--lat", help="Latitude."),
    lon: float = typer.Option(None, "--lon", help="Longitude."),
    enabled: bool = typer.Option(
        None, "--enable/--drain", help="Take requests again, or drain (no new requests)."
    ),
    latency: list[str] = LATENCY,
) -> None:
    """Change a region: name, jurisdiction, location, drain, latencies."""
    from modelgrid.protocol.topology import RegionPatch

    given = {"name": name, "jurisdiction": jurisdiction, "lat": lat, "lon": lon}
    fields = {k: v for k, v in given.items() if v is not None}
    if enabled is not None:
        fields["enabled"] = enabled
    if latency:
        fields["latency_ms"] = _latency(latency)
    body = build(RegionPatch, **fields)
    control_run(lambda c: c.topology.update_region(region_id, body, actor=actor()))
    console.print(f"changed region {region_id}")


@regions_app.command("remove")
def remove_region(region_id: str = typer.Argument(..., help="Region id.")) -> None:
    """Remove a region (it must have no deployments and no workspace may name it)."""
    control_run(lambda c: c.topology.remove_region(region_id, actor=actor()))
    console.print(f"removed region {region_id}")


@deployments_app.command("put")
def put_deployment(
    model: str = typer.Argument(..., help="The served model id."),
    region: str = typer.Argument(..., help="Region id."),
    local: bool = typer.Option(
        False, "--local", help="A replica on the gateway's own engine (gateway region only)."
    ),
    upstream: list[str] = typer.Option(
        None, "--upstream", help="An upstream replica's API root, http://host:port/v1 (repeatable)."
    ),
    upstream_model: str = typer.Option(
        None, "--upstream-model", help="The model's name on the upstreams (default: MODEL)."
    ),
    max_concurrency: int = typer.Option(
        None, "--max-concurrency", help="Requests in flight before an upstream is saturated."
    ),
    attempts: int = typer.Option(
        None,
        "--attempts",
        help="Attempts a request may make on each upstream: >1 for a pool (a Ray Serve app).",
    ),
    prefix_header: str = typer.Option(
        None,
        "--prefix-header",
        help="Send the prompt's prefix fingerprint in this header (Ray Serve: x-session-id).",
    ),
) -> None:
    """Create the deployment of MODEL in REGION, or replace its replicas."""
    from modelgrid.protocol.topology import DeploymentSpec, ReplicaSpec

    replicas = [build(ReplicaSpec, kind="local")] if local else []
    for url in upstream or ():
        fields = {
            "upstream_model": upstream_model,
            "max_concurrency": max_concurrency,
            "attempts": attempts,
            "prefix_header": prefix_header,
        }
        given = {k: v for k, v in fields.items() if v is not None}
        replicas.append(build(ReplicaSpec, kind="upstream", base_url=url, **given))
    if not replicas:
        raise typer.BadParameter("give --local or at least one --upstream URL")
    body = build(DeploymentSpec, model=model, region=region, replicas=replicas)
    d = control_run(lambda c: c.topology.put_deployment(body, actor=actor()))
    console.print(f"deployed {model} in {region}: {', '.join(r.id for r in d.replicas)}")


@deployments_app.command("remove")
def remove_deployment(
    model: str = typer.Argument(..., help="The served model id."),
    region: str = typer.Argument(..., help="Region id."),
) -> None:
    """Remove the deployment of MODEL in REGION."""
    control_run(lambda c: c.topology.remove_deployment(region, model, actor=actor()))
    console.print(f"removed {model} from {region}")


__all__ = ["deployments_app", "regions_app"]
