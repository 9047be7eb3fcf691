"""The shipped migrations build exactly the schema the models describe (no drift)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from modelgrid.storage import migrate
from modelgrid.storage.models import Base


def _drift(sync_url: str) -> list[object]:
    engine = create_engine(sync_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def _single_head() -> str:
    """The migrations' one head (several heads: two migrations forked from one parent)."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"the migrations have several heads: {heads}"
    return str(heads[0])


def test_sqlite_upgrade_from_empty_has_no_drift(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")  # idempotent
    assert _drift(f"sqlite:///{path}") == []


@pytest.mark.postgres
def test_postgres_upgrade_from_empty_has_no_drift() -> None:
    """Against the real PostgreSQL at 127.0.0.1:5432 (database ``test``, trust auth)."""
    import asyncpg

    name = f"mg_migr_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        migrate.upgrade(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
        sync = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        assert _drift(sync) == []
        eng = create_engine(sync)
        with eng.connect() as conn:
            head = conn.execute(text("select version_num from alembic_version")).scalar()
        assert head == _single_head()
        eng.dispose()
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
