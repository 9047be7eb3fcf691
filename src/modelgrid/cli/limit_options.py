"""CLI options shared by ``keys`` and ``workspaces``: residency scopes, limits and output
format."""

from __future__ import annotations

import typer

from modelgrid.cli.common import non_empty_list

RPM = typer.Option(None, "--rpm", help="Requests per minute.")
TPM = typer.Option(None, "--tpm", help="Tokens per minute.")
CONCURRENCY = typer.Option(None, "--concurrency", help="Requests in flight.")
BUDGET = typer.Option(None, "--monthly-budget-micros", help="Spend per UTC month, micro-units.")
TOKENS = typer.Option(None, "--monthly-token-budget", help="Tokens per UTC month.")
JSON = typer.Option(False, "--json", help="Print JSON.")
REGIONS = typer.Option(
    None, "--regions", help="Allowed regions, comma-separated.", callback=non_empty_list
)
JURISDICTIONS = typer.Option(
    None,
    "--jurisdictions",
    help="Allowed jurisdictions (a region's country or bloc: SG, DE, EU…), comma-separated.",
    callback=non_empty_list,
)


def limits(
    rpm: int | None, tpm: int | None, conc: int | None, budget: int | None, tokens: int | None
) -> dict[str, int | None]:
    """The limit options as the admin wire model's ``limits`` fields."""
    return {
        "rpm": rpm,
        "tpm": tpm,
        "concurrency": conc,
        "monthly_budget_micros": budget,
        "monthly_token_budget": tokens,
    }
