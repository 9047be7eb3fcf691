"""Helpers shared by the subcommands: settings, an async runner, a tenancy service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rich.console import Console

from modelgrid.config import Settings

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)


def settings() -> Settings:
    return Settings()


def run(fn: Callable[[Settings], Awaitable[T]]) -> T:
    """Migrate the configured database, then run ``fn(settings)`` with an event loop."""
    from modelgrid.storage import migrate

    s = settings()
    migrate.upgrade(s.database_url)
    return asyncio.run(fn(s))


async def with_tenancy(s: Settings, fn: Callable[[object], Awaitable[T]]) -> T:
    from modelgrid.storage import db
    from modelgrid.tenancy.service import TenancyService

    engine = db.create_engine(s.database_url)
    try:
        return await fn(TenancyService(db.sessionmaker(engine)))
    finally:
        await engine.dispose()
