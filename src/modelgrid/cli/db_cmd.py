"""``modelgrid db upgrade`` and ``modelgrid config``."""

from __future__ import annotations

import json

import typer

from modelgrid.cli.common import console, settings

app = typer.Typer(help="Database schema management.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the shipped Alembic migrations to the configured database."""
    from modelgrid.storage import migrate

    s = settings()
    migrate.upgrade(s.database_url, revision)
    console.print(f"database at {s.masked()['database']['url']} is at revision {revision}")


def config() -> None:
    """Print the effective settings as JSON (secrets masked)."""
    console.print_json(json.dumps(settings().masked()))
