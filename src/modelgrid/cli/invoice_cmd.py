"""``modelgrid invoice WORKSPACE --month YYYY-MM [--format json|csv]``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from enum import StrEnum

import typer

from modelgrid.cli.common import print_json, read_run


class Format(StrEnum):
    json = "json"
    csv = "csv"


def invoice(
    workspace: str = typer.Argument(..., help="Workspace name or id."),
    month: str = typer.Option(None, "--month", help="YYYY-MM, UTC (default: this month)."),
    fmt: Format = typer.Option(Format.json, "--format", help="json or csv."),
) -> None:
    """Print a workspace's invoice for a month: usage and cost per model and region."""
    from modelgrid.tenancy import billing

    period = month or f"{datetime.now(UTC):%Y-%m}"
    inv = read_run(lambda s: billing.invoice(s, workspace, period))
    if fmt is Format.csv:
        sys.stdout.write(billing.invoice_csv(inv))
        sys.stdout.flush()
    else:
        print_json(inv)
