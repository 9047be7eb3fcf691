"""``modelgrid usage``: per-key and per-model totals."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from modelgrid.cli.common import console, read_run


def usage(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Print usage totals per API key and per model (a database that cannot be reached:
    one red line, exit status 1)."""
    from modelgrid.storage import repositories as repo

    async def totals(sessions: Any) -> Any:
        async with sessions() as session:
            return await repo.usage_totals(session, "key"), await repo.usage_totals(
                session, "model"
            )

    by_key, by_model = read_run(totals)
    if as_json:

        def rows(items: Any) -> list[dict[str, Any]]:
            return [
                {
                    "group": t.group,
                    "requests": t.requests,
                    "prompt_tokens": t.prompt_tokens,
                    "completion_tokens": t.completion_tokens,
                }
                for t in items
            ]

        print(json.dumps({"by_key": rows(by_key), "by_model": rows(by_model)}))
        return
    for title, items in (("API key", by_key), ("model", by_model)):
        table = Table(
            title,
            "requests",
            "prompt tokens",
            "completion tokens",
            "total tokens",
            title=f"Usage by {title}",
        )
        for t in items:
            table.add_row(
                t.group,
                str(t.requests),
                str(t.prompt_tokens),
                str(t.completion_tokens),
                str(t.prompt_tokens + t.completion_tokens),
            )
        console.print(table)
