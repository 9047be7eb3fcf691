"""Test databases: a SQLite file, or a fresh database on the real PostgreSQL, each born
migrated: Alembic runs once per test process on a template (a SQLite file, a PostgreSQL
database), and every test gets a copy (``shutil.copyfile``; ``CREATE DATABASE … TEMPLATE``).

``MODELGRID_TEST_DATABASE=postgres`` makes the ``database_url`` fixture (and so ``fake_server``)
use PostgreSQL at 127.0.0.1:5432 (user ``postgres``, trust auth): a database
``mg_t_<random>`` copied from the template and dropped afterwards. The tests whose SQL differs
between the two (repositories, usage and billing queries, budgets, admin conflicts, key
lookups) parametrize it with ``BOTH_DATABASES`` (the PostgreSQL variant is marked
``postgres``): the default test run covers both. When PostgreSQL cannot be reached the test is
skipped, except in CI (``CI=true``), where it fails: CI never skips silently.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from modelgrid.storage import db, migrate
from modelgrid.storage import repositories as repo

T = TypeVar("T")

PG_HOST = "127.0.0.1:5432"
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}/test"

BOTH_DATABASES = pytest.mark.parametrize(
    "database_url",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def default_kind() -> str:
    kind = os.environ.get("MODELGRID_TEST_DATABASE", "sqlite")
    if kind not in ("sqlite", "postgres"):
        raise ValueError(f"MODELGRID_TEST_DATABASE must be sqlite or postgres, not {kind!r}")
    return kind


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


_migrated: set[str] = set()  # database URLs this process knows to be at the head revision
_templates: dict[str, str] = {}  # "sqlite" -> template file, "postgres" -> template database


def ensure_migrated(url: str) -> None:
    """Migrate ``url`` to head unless this process made it (a template copy) or migrated it."""
    if url not in _migrated:
        migrate.upgrade(url)
        _migrated.add(url)


def _sqlite_template() -> str:
    if "sqlite" not in _templates:
        folder = tempfile.mkdtemp(prefix="mg-template-")
        atexit.register(shutil.rmtree, folder, True)
        path = os.path.join(folder, "template.db")
        migrate.upgrade(f"sqlite+aiosqlite:///{path}")
        _templates["sqlite"] = path
    return _templates["sqlite"]


def migrated_sqlite(path: Path) -> str:
    """The async URL of a SQLite file at ``path`` at the head revision: a copy of the template
    (Alembic ran once for this process), or the file already there, left as it is."""
    url = f"sqlite+aiosqlite:///{path}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_sqlite_template(), path)
        _migrated.add(url)
    return url


def _unreachable(exc: Exception) -> None:
    msg = f"PostgreSQL at {PG_HOST} is not reachable: {exc}"
    if in_ci():
        pytest.fail(msg)
    pytest.skip(msg)


def _postgres_template() -> str:
    if "postgres" not in _templates:
        name = f"mg_tpl_{secrets.token_hex(6)}"
        _pg_admin(f'CREATE DATABASE "{name}"')
        atexit.register(_pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        migrate.upgrade(f"postgresql+asyncpg://postgres@{PG_HOST}/{name}")
        _templates["postgres"] = name
    return _templates["postgres"]


@contextmanager
def postgres_database(*, migrated: bool = True) -> Iterator[str]:
    """A fresh PostgreSQL database's async URL, at the head revision (a copy of the
    template) or, with ``migrated=False``, empty; dropped on exit."""
    import psycopg

    name = f"mg_t_{secrets.token_hex(6)}"
    try:
        template = f' TEMPLATE "{_postgres_template()}"' if migrated else ""
        _pg_admin(f'CREATE DATABASE "{name}"{template}')
    except psycopg.OperationalError as exc:
        _unreachable(exc)
    url = f"postgresql+asyncpg://postgres@{PG_HOST}/{name}"
    if migrated:
        _migrated.add(url)
    try:
        yield url
    finally:
        _migrated.discard(url)
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A database at the head revision: PostgreSQL (``kind == "postgres"``) or SQLite."""
    if kind == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield migrated_sqlite(tmp_path / "mg.db")


def with_sessions(url: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(sessions)`` on a private engine, ``url`` migrated first if it may not be
    (from synchronous tests)."""

    async def go() -> T:
        engine = db.create_engine(url)
        try:
            return await fn(db.sessionmaker(engine))
        finally:
            await engine.dispose()

    ensure_migrated(url)
    return asyncio.run(go())


def usage_row(request_id: str, created_at: datetime, **fields: Any) -> dict[str, Any]:
    """A ``usage_records`` row with defaults for what a test does not care about."""
    row: dict[str, Any] = {
        "request_id": request_id,
        "client_request_id": None,
        "api_key_id": None,
        "workspace_id": None,
        "model": "m",
        "region": None,
        "endpoint": "chat.completions",
        "prompt_tokens": 0,
        "cached_tokens": 0,
        "completion_tokens": 0,
        "cost_micros": 0,
        "currency": None,
        "price_id": None,
        "ttft_ms": None,
        "total_ms": 1,
        "status": 200,
        "finish_reason": "stop",
        "created_at": created_at,
    }
    row.update(fields)
    return row


async def insert_usage(sessions: Any, rows: list[dict[str, Any]]) -> None:
    async with sessions() as session, session.begin():
        await repo.insert_usage(session, rows)


__all__ = [
    "BOTH_DATABASES",
    "database",
    "default_kind",
    "ensure_migrated",
    "in_ci",
    "insert_usage",
    "migrated_sqlite",
    "postgres_database",
    "usage_row",
    "with_sessions",
]
