"""Test databases: a SQLite file, or a fresh database on the real PostgreSQL.

``MODELGRID_TEST_DATABASE=postgres`` makes the ``database_url`` fixture (and so ``fake_server``)
use PostgreSQL at 127.0.0.1:5432 (user ``postgres``, trust auth): a database
``mg_t_<random>`` created from the ``test`` database and dropped afterwards. Tests that must
pass on both parametrize it with ``BOTH_DATABASES`` (the PostgreSQL variant is marked
``postgres``). When PostgreSQL cannot be reached the test is skipped, except in CI
(``CI=true``), where it fails: CI never skips silently.
"""

from __future__ import annotations

import asyncio
import os
import secrets
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


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database's async URL; dropped on exit."""
    import psycopg

    name = f"mg_t_{secrets.token_hex(6)}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        msg = f"PostgreSQL at {PG_HOST} is not reachable: {exc}"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        yield f"postgresql+asyncpg://postgres@{PG_HOST}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'mg.db'}"


def with_sessions(url: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Migrate ``url`` and run ``fn(sessions)`` on a private engine (from synchronous tests)."""

    async def go() -> T:
        engine = db.create_engine(url)
        try:
            return await fn(db.sessionmaker(engine))
        finally:
            await engine.dispose()

    migrate.upgrade(url)
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
    "in_ci",
    "insert_usage",
    "postgres_database",
    "usage_row",
    "with_sessions",
]
