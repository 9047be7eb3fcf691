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


@app.command("rebuild-rollups")
def rebuild_rollups() -> None:
    """Recompute the usage roll-ups (minute, hour, day) from the usage ledger, in one
    transaction (on PostgreSQL, usage inserts wait for it)."""
    from typing import Any

    from modelgrid.cli.common import run
    from modelgrid.storage import db, rollups

    async def go(s: Any) -> int:
        engine = db.create_engine(s.database_url)
        try:
            async with db.sessionmaker(engine)() as session, session.begin():
                return await rollups.rebuild(session)
        finally:
            await engine.dispose()

    console.print(f"usage_rollups rebuilt: {run(go)} rows")
