"""``modelgrid batches list|show|cancel|results``: batch jobs, for operators.

They read the configured database (every workspace's batches unless ``--workspace``); ``show
--watch`` follows a batch until it ends, with its progress (lines done of the total, the
rate and the time left at that rate). Tenants use ``/v1/batches``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import typer
from rich.table import Table

from modelgrid.cli.common import console, control_run, print_json

app = typer.Typer(help="Batch jobs: progress, results, cancel.", no_args_is_help=True)
BATCH = typer.Argument(..., help="Batch id (batch_…).")


def _when(ts: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else ""


def progress(b: dict[str, Any], now: float | None = None) -> str:
    """``done/total (pct) · rate lines/s · ETA`` of a batch object (the API's shape)."""
    counts = b["request_counts"]
    done, total = counts["completed"] + counts["failed"], counts["total"]
    if not total:
        return str(b["status"])
    text = f"{done}/{total} ({100 * done / total:.0f}%)"
    started = b.get("in_progress_at")
    if started and b["status"] == "in_progress" and done:
        elapsed = max((now or time.time()) - started, 1e-6)
        rate = done / elapsed
        text += f" · {rate:.1f} lines/s · ETA {((total - done) / rate):.0f} s"
    return text


@app.command("list")
def list_batches(
    workspace: str = typer.Option(None, "--workspace", help="Only this workspace (its id)."),
    limit: int = typer.Option(20, "--limit", min=1, max=100, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List batches, newest first."""
    page = control_run(lambda c: c.batches.list(workspace, limit=limit))
    if as_json:
        print_json(page["data"])
        return
    table = Table("status", "model", "endpoint", "progress", "created")
    table.add_column("id", no_wrap=True)  # whole, to copy into ``batches show``
    for b in page["data"]:
        table.add_row(
            b["status"], b["model"], b["endpoint"], progress(b), _when(b["created_at"]), b["id"]
        )
    console.print(table)


@app.command("show")
def show(
    batch_id: str = BATCH,
    watch: bool = typer.Option(False, "--watch", help="Follow it until it ends."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a batch; ``--watch`` prints its progress until it ends."""
    b = control_run(lambda c: c.batches.get(None, batch_id))
    if as_json and not watch:
        print_json(b)
        return
    console.print(f"{b['id']}: {b['status']} · {progress(b)}")
    while watch and b["status"] not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(1)
        b = control_run(lambda c: c.batches.get(None, batch_id))
        console.print(f"{b['id']}: {b['status']} · {progress(b)}")
    if watch and as_json:
        print_json(b)


@app.command("cancel")
def cancel(batch_id: str = BATCH) -> None:
    """Cancel a batch: finished lines stay billed, the rest go to its error file."""
    b = control_run(lambda c: c.batches.cancel(None, batch_id))
    console.print(f"{b['id']}: {b['status']}")


@app.command("results")
def results(
    batch_id: str = BATCH,
    errors: bool = typer.Option(False, "--errors", help="The error file instead."),
) -> None:
    """Print the batch's output file (or ``--errors``: its error file), one JSON line each."""
    lines = control_run(lambda c: c.batches.results(None, batch_id, errors=errors))
    out = sys.stdout.buffer
    for line in lines:
        out.write(line)
    out.flush()


__all__ = ["app", "progress"]
