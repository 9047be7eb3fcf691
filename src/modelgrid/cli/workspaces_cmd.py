"""``modelgrid workspaces create|list|show|set`` (audited as ``cli:<os user>``)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from modelgrid.cli.common import (
    actor,
    build,
    console,
    control_run,
    fmt_limits,
    fmt_time,
    limits_from,
    print_json,
    split_list,
)
from modelgrid.cli.limit_options import (
    BUDGET,
    CONCURRENCY,
    JSON,
    JURISDICTIONS,
    REGIONS,
    RPM,
    TOKENS,
    TPM,
)
from modelgrid.cli.limit_options import limits as _limits

app = typer.Typer(help="Manage workspaces (tenants).", no_args_is_help=True)


def _any(values: list[str] | None) -> str:
    return ",".join(values) if values is not None else "any"


def _show(ws: Any, as_json: bool) -> None:
    if as_json:
        print_json(ws)
        return
    console.print(
        f"[bold]{ws.name}[/] ({ws.id}) currency {ws.currency}, home region {ws.home_region}, "
        f"regions {_any(ws.allowed_regions)}, jurisdictions {_any(ws.allowed_jurisdictions)}, "
        f"limits {fmt_limits(ws.limits)}"
    )


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Unique workspace name."),
    currency: str = typer.Option("USD", "--currency", help="Billing currency (ISO 4217)."),
    home_region: str = typer.Option(
        None,
        "--home-region",
        help="Preferred region (default: the first of --regions, else local).",
    ),
    regions: str = REGIONS,
    jurisdictions: str = JURISDICTIONS,
    rpm: int = RPM,
    tpm: int = TPM,
    concurrency: int = CONCURRENCY,
    budget: int = BUDGET,
    tokens: int = TOKENS,
    as_json: bool = JSON,
) -> None:
    """Create a workspace."""
    from modelgrid.protocol.admin import WorkspaceCreate

    body = build(
        WorkspaceCreate,
        name=name,
        currency=currency,
        home_region=home_region,
        allowed_regions=split_list(regions),
        allowed_jurisdictions=split_list(jurisdictions),
        limits=limits_from(_limits(rpm, tpm, concurrency, budget, tokens)),
    )
    _show(control_run(lambda c: c.workspaces.create(body, actor=actor())), as_json)


@app.command("list")
def list_workspaces(as_json: bool = JSON) -> None:
    """List workspaces."""
    rows = control_run(lambda c: c.workspaces.list())
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "currency", "home", "regions", "jurisdictions", "limits", "created")
    for ws in rows:
        table.add_row(
            ws.id,
            ws.name,
            ws.currency,
            ws.home_region,
            _any(ws.allowed_regions),
            _any(ws.allowed_jurisdictions),
            fmt_limits(ws.limits),
            fmt_time(ws.created_at),
        )
    console.print(table)


@app.command("show")
def show(
    workspace: str = typer.Argument(..., help="Workspace name or id."), as_json: bool = JSON
) -> None:
    """Show one workspace."""
    _show(control_run(lambda c: c.workspaces.get(workspace)), as_json)


@app.command("set")
def set_(
    workspace: str = typer.Argument(..., help="Workspace name or id."),
    home_region: str = typer.Option(None, "--home-region", help="Preferred region."),
    regions: str = REGIONS,
    jurisdictions: str = JURISDICTIONS,
    rpm: int = RPM,
    tpm: int = TPM,
    concurrency: int = CONCURRENCY,
    budget: int = BUDGET,
    tokens: int = TOKENS,
    unset: list[str] = typer.Option(
        None,
        "--unset",
        help="Clear a setting (repeatable): regions, jurisdictions, rpm, tpm, concurrency, "
        "monthly_budget_micros, monthly_token_budget.",
    ),
    as_json: bool = JSON,
) -> None:
    """Change a workspace's limits, allowed regions or jurisdictions, or home region."""
    from modelgrid.protocol.admin import WorkspacePatch

    fields: dict[str, Any] = {}
    if home_region is not None:
        fields["home_region"] = home_region
    for opt, field, label in (
        (regions, "allowed_regions", "regions"),
        (jurisdictions, "allowed_jurisdictions", "jurisdictions"),
    ):
        if opt is not None:
            fields[field] = split_list(opt)
        elif label in (unset or ()):
            fields[field] = None
    limits = limits_from(
        _limits(rpm, tpm, concurrency, budget, tokens), unset, ("regions", "jurisdictions")
    )
    if limits.model_fields_set:
        fields["limits"] = limits
    body = build(WorkspacePatch, **fields)
    _show(control_run(lambda c: c.workspaces.update(workspace, body, actor=actor())), as_json)
