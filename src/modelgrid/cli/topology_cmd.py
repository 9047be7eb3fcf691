"""``modelgrid regions`` and ``modelgrid deployments``: the configured topology.

They read the topology file (``MODELGRID_TOPOLOGY_FILE``, else ``<data_dir>/topology.toml``,
which the admin API keeps up to date) or show the embedded default (region ``local`` with the
configured models). A running server's live view, with breaker states and loads, is
``GET /admin/v1/regions`` and ``GET /admin/v1/deployments``.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from modelgrid.cli.common import console, err_console, settings

JSON = typer.Option(False, "--json", help="Print JSON.")


def _topology() -> tuple[Any, str]:
    return topology_or_exit(settings())


def topology_or_exit(s: Any) -> tuple[Any, str]:
    """The topology the settings name (and where it came from); a bad or unreadable file
    ends the command with one line naming the file and the problem (status 1)."""
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
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


def regions(as_json: bool = JSON) -> None:
    """List the regions: jurisdiction, location, expected latency from this gateway, models."""
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


def deployments(
    model: str = typer.Option(None, "--model", help="Only this model."), as_json: bool = JSON
) -> None:
    """List the deployments (a model in a region) and their replicas."""
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
        conc = "" if row["max_concurrency"] is None else str(row["max_concurrency"])
        table.add_row(row["model"], row["region"], row["replica"], row["kind"], endpoint, conc)
    console.print(table)


__all__ = ["deployments", "regions"]
