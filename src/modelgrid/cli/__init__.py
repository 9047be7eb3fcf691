"""The ``modelgrid`` command (Typer). Subcommands import heavy modules lazily."""

from __future__ import annotations

import typer

from modelgrid.cli import (
    apps_cmd,
    audit_cmd,
    batches_cmd,
    db_cmd,
    engine_cmd,
    fleet_cmd,
    invoice_cmd,
    keys_cmd,
    knowledge_cmd,
    models_cmd,
    plan_cmd,
    prices_cmd,
    serve_cmd,
    topology_cmd,
    usage_cmd,
    workspaces_cmd,
)

app = typer.Typer(
    name="modelgrid",
    help="modelgrid: a self-hostable AI model cloud (OpenAI-compatible API, keys, metering).",
    no_args_is_help=True,
    add_completion=False,
)
app.command("serve")(serve_cmd.serve)
app.command("engine")(engine_cmd.engine)
app.command("usage")(usage_cmd.usage)
app.command("config")(db_cmd.config)
app.command("invoice")(invoice_cmd.invoice)
app.command("audit")(audit_cmd.audit)
app.add_typer(topology_cmd.regions_app, name="regions")
app.add_typer(topology_cmd.deployments_app, name="deployments")
app.add_typer(workspaces_cmd.app, name="workspaces")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(prices_cmd.app, name="prices")
app.add_typer(models_cmd.app, name="models")
app.add_typer(db_cmd.app, name="db")
app.add_typer(batches_cmd.app, name="batches")
app.add_typer(knowledge_cmd.app, name="knowledge")
app.add_typer(apps_cmd.app, name="apps")
app.add_typer(plan_cmd.app, name="plan")
app.add_typer(fleet_cmd.app, name="fleet")


def main() -> None:
    app()


__all__ = ["app", "main"]
