"""``modelgrid keys create|list|show|set|revoke|rotate`` (audited as ``cli:<os user>``)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from modelgrid.cli.common import (
    actor,
    build,
    console,
    control_run,
    err_console,
    fmt_limits,
    fmt_time,
    limits_from,
    non_empty_list,
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

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)

KEY = typer.Argument(..., help="Key id or prefix (mg-…).")
MODELS = typer.Option(
    None,
    "--models",
    help="Allowed models, comma-separated (default: all).",
    callback=non_empty_list,
)


def _days(days: float | None) -> int | None:
    return None if days is None else round(days * 86400)


def _print_created(key: Any, workspace: str, as_json: bool) -> None:
    if as_json:
        print_json(key)
        return
    err_console.print(
        f"[bold]{key.role} key {key.prefix}[/] in workspace '{workspace}' (shown once):"
    )
    print(key.key)


@app.command("create")
def create(
    name: str = typer.Option("", "--name", help="A label for the key."),
    workspace: str = typer.Option(
        "default",
        "--workspace",
        help="Workspace name or id; it must exist (the 'default' workspace is created on first "
        "use), unless --create-workspace.",
    ),
    create_workspace: bool = typer.Option(
        False, "--create-workspace", help="Create the workspace if there is none by that name."
    ),
    admin: bool = typer.Option(False, "--admin", help="Create an admin key."),
    models: str = MODELS,
    regions: str = REGIONS,
    jurisdictions: str = JURISDICTIONS,
    expires_in_days: float = typer.Option(None, "--expires-in-days", help="Lifetime in days."),
    rpm: int = RPM,
    tpm: int = TPM,
    concurrency: int = CONCURRENCY,
    budget: int = BUDGET,
    tokens: int = TOKENS,
    as_json: bool = JSON,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from modelgrid.protocol.admin import KeyCreate

    body = build(
        KeyCreate,
        name=name,
        role="admin" if admin else "tenant",
        allowed_models=split_list(models),
        allowed_regions=split_list(regions),
        allowed_jurisdictions=split_list(jurisdictions),
        expires_in_s=_days(expires_in_days),
        limits=limits_from(_limits(rpm, tpm, concurrency, budget, tokens)),
    )
    who = actor()

    key = control_run(
        lambda c: c.keys.create_in(workspace, body, actor=who, create_workspace=create_workspace)
    )
    _print_created(key, workspace, as_json)


@app.command("list")
def list_keys(
    workspace: str = typer.Option(None, "--workspace", help="Only this workspace (name or id)."),
    all_: bool = typer.Option(False, "--all", help="Include revoked keys."),
    as_json: bool = JSON,
) -> None:
    """List keys (never their secrets)."""
    rows = control_run(lambda c: c.keys.list(workspace=workspace, include_revoked=all_))
    if as_json:
        print_json(rows)
        return
    table = Table("prefix", "name", "role", "workspace", "scopes", "limits", "expires", "revoked")
    for k in rows:
        scopes = [
            f"models={','.join(k.allowed_models)}" if k.allowed_models is not None else "",
            f"regions={','.join(k.allowed_regions)}" if k.allowed_regions is not None else "",
            f"jurisdictions={','.join(k.allowed_jurisdictions)}"
            if k.allowed_jurisdictions is not None
            else "",
        ]
        table.add_row(
            k.prefix,
            k.name,
            k.role,
            k.workspace_id,
            " ".join(x for x in scopes if x) or "-",
            fmt_limits(k.limits),
            fmt_time(k.expires_at),
            fmt_time(k.revoked_at),
        )
    console.print(table)


@app.command("show")
def show(key_id: str = KEY) -> None:
    """Show one key as JSON (never its secret)."""
    print_json(control_run(lambda c: c.keys.get(key_id)))


@app.command("set")
def set_(
    key_id: str = KEY,
    name: str = typer.Option(None, "--name", help="A new label."),
    models: str = MODELS,
    regions: str = REGIONS,
    jurisdictions: str = JURISDICTIONS,
    expires_in_days: float = typer.Option(
        None, "--expires-in-days", help="Expire N days from now."
    ),
    rpm: int = RPM,
    tpm: int = TPM,
    concurrency: int = CONCURRENCY,
    budget: int = BUDGET,
    tokens: int = TOKENS,
    unset: list[str] = typer.Option(
        None,
        "--unset",
        help="Clear a setting (repeatable): models, regions, jurisdictions, expires, rpm, tpm, "
        "concurrency, "
        "monthly_budget_micros, monthly_token_budget.",
    ),
) -> None:
    """Change a key's scopes, expiry or limits; prints the key as JSON."""
    from datetime import UTC, datetime, timedelta

    from modelgrid.protocol.admin import KeyPatch

    clear = set(unset or ())
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = name
    for opt, field, label in (
        (models, "allowed_models", "models"),
        (regions, "allowed_regions", "regions"),
        (jurisdictions, "allowed_jurisdictions", "jurisdictions"),
    ):
        if opt is not None:
            fields[field] = split_list(opt)
        elif label in clear:
            fields[field] = None
    if expires_in_days is not None:
        fields["expires_at"] = datetime.now(UTC) + timedelta(days=expires_in_days)
    elif "expires" in clear:
        fields["expires_at"] = None
    limits = limits_from(
        _limits(rpm, tpm, concurrency, budget, tokens),
        unset,
        ("models", "regions", "jurisdictions", "expires"),
    )
    if limits.model_fields_set:
        fields["limits"] = limits
    body = build(KeyPatch, **fields)
    print_json(control_run(lambda c: c.keys.update(key_id, body, actor=actor())))


@app.command("revoke")
def revoke(key_id: str = KEY) -> None:
    """Revoke a key; takes effect on the next request."""
    key = control_run(lambda c: c.keys.revoke(key_id, actor=actor()))
    console.print(f"revoked {key.prefix}")


@app.command("rotate")
def rotate(
    key_id: str = KEY,
    expires_in_days: float = typer.Option(
        None, "--expires-in-days", help="Lifetime of the new key (default: the old key's expiry)."
    ),
    as_json: bool = JSON,
) -> None:
    """Replace a key with a new one (same workspace, scopes and limits); the old key is
    revoked at once. Prints the new key once."""
    from modelgrid.protocol.admin import KeyRotate

    body = build(KeyRotate, expires_in_s=_days(expires_in_days))
    key = control_run(lambda c: c.keys.rotate(key_id, body, actor=actor()))
    if not as_json:
        err_console.print(f"revoked {key_id}; its replacement:")
    _print_created(key, key.workspace_id, as_json)
