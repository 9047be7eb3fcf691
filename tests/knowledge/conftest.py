"""Fixtures shared by the knowledge tests that need PostgreSQL itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.databases import postgres_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh migrated PostgreSQL database's URL, dropped after the test (made outside the
    event loop: Alembic runs its own)."""
    with postgres_database() as url:
        yield url
