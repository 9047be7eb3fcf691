"""``modelgrid keys create|list|revoke``."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from modelgrid.cli.common import console, err_console, run, with_tenancy

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Option("", "--name", help="A label for the key."),
    workspace: str = typer.Option("default", "--workspace", help="Workspace (created if missing)."),
    admin: bool = typer.Option(False, "--admin", help="Create an admin key."),
) -> None:
    """Create a key and print it once (only its hash is stored)."""

    async def go(s: Any) -> Any:
        return await with_tenancy(
            s,
            lambda t: t.create_key(
                name=name, role="admin" if admin else "tenant", workspace=workspace
            ),  # type: ignore[attr-defined]
        )

    key = run(go)
    err_console.print(
        f"[bold]{key.role} key {key.prefix}[/] in workspace '{workspace}' (shown once):"
    )
    print(key.plaintext)


@app.command("list")
def list_keys(
    all_: bool = typer.Option(False, "--all", help="Include revoked keys."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List keys (never their secrets)."""

    async def go(s: Any) -> Any:
        return await with_tenancy(s, lambda t: t.list_keys(include_revoked=all_))  # type: ignore[attr-defined]

    rows = run(go)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "prefix": k.prefix,
                        "name": k.name,
                        "role": k.role,
                        "workspace_id": k.workspace_id,
                        "created_at": k.created_at.isoformat(),
                        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                    }
                    for k in rows
                ]
            )
        )
        return
    table = Table("prefix", "name", "role", "workspace", "created", "revoked")
    for k in rows:
        table.add_row(
            k.prefix,
            k.name,
            k.role,
            k.workspace_id,
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
        )
    console.print(table)


@app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="Key id or prefix (mg-…).")) -> None:
    """Revoke a key; takes effect on the next request."""
    from modelgrid.core.errors import NotFoundError

    async def go(s: Any) -> Any:
        return await with_tenancy(s, lambda t: t.revoke_key(key_id))  # type: ignore[attr-defined]

    try:
        run(go)
    except NotFoundError as exc:
        err_console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from None
    console.print(f"revoked {key_id}")
