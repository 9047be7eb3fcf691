"""``modelgrid audit``: the audit log, newest first."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from modelgrid.cli.common import console, fmt_time, print_json, read_run


def audit(
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="Entries to show."),
    action: str = typer.Option(None, "--action", help="Only this action, e.g. key.revoke."),
    target: str = typer.Option(None, "--target", help="Only this target, e.g. api_key:<id>."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show who changed what and when (admin API and CLI changes)."""
    from modelgrid.tenancy import audit as audit_log

    rows, _ = read_run(
        lambda s: audit_log.list_entries(s, limit=limit, action=action, target=target)
    )
    if as_json:
        print_json(rows)
        return
    table = Table("id", "at", "actor", "action", "target", "details")
    for e in rows:
        details = json.dumps(e.details, separators=(",", ":")) if e.details else ""
        table.add_row(str(e.id), fmt_time(e.at), e.actor, e.action, e.target, details)
    console.print(table)
