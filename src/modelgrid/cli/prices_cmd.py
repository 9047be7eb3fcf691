"""``modelgrid prices add|list``: the append-only price book (audited as ``cli:<os user>``)."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.table import Table

from modelgrid.cli.common import actor, build, console, control_run, fmt_time, print_json

app = typer.Typer(help="The price book (micro-units per 1M tokens).", no_args_is_help=True)


@app.command("add")
def add(
    model: str = typer.Argument(..., help="Model id."),
    input_micros: int = typer.Option(
        ..., "--input-micros", help="Price of 1M uncached prompt tokens, micro-units."
    ),
    output_micros: int = typer.Option(
        ..., "--output-micros", help="Price of 1M completion tokens, micro-units."
    ),
    cached_input_micros: int = typer.Option(
        None, "--cached-input-micros", help="Price of 1M cached prompt tokens (default: input)."
    ),
    region: str = typer.Option(None, "--region", help="Only in this region (default: any)."),
    currency: str = typer.Option("USD", "--currency", help="ISO 4217 code."),
    effective_from: datetime = typer.Option(
        None,
        "--effective-from",
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
        help="When it takes effect, UTC unless an offset is given (default: now; never past).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Add a price book entry; it applies to requests from ``--effective-from`` on."""
    from modelgrid.protocol.admin import PriceCreate

    body = build(
        PriceCreate,
        model=model,
        region=region,
        currency=currency,
        input_micros_per_1m=input_micros,
        cached_input_micros_per_1m=cached_input_micros,
        output_micros_per_1m=output_micros,
        effective_from=effective_from,
    )
    price = control_run(lambda c: c.prices.add(body, actor=actor()))
    if as_json:
        print_json(price)
        return
    console.print(f"price {price.id}: {model} from {price.effective_from.isoformat()}")


@app.command("list")
def list_prices(
    model: str = typer.Option(None, "--model", help="Only this model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the price book, oldest entry of each model and region first."""
    rows = control_run(lambda c: c.prices.list(model))
    if as_json:
        print_json(rows)
        return
    table = Table("id", "model", "region", "currency", "input/1M", "cached/1M", "output/1M", "from")
    for p in rows:
        table.add_row(
            str(p.id),
            p.model,
            p.region or "any",
            p.currency,
            str(p.input_micros_per_1m),
            str(p.cached_input_micros_per_1m),
            str(p.output_micros_per_1m),
            fmt_time(p.effective_from),
        )
    console.print(table)
