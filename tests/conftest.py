from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelgrid.config import Settings
from modelgrid.engines.fake import FakeEngine
from tests.databases import database, default_kind
from tests.support import ThreadServer, create_key


def make_settings(tmp_path: Path, database_url: str | None = None, **overrides: object) -> Settings:
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'mg.db'}"
    return Settings(
        data_dir=tmp_path,
        database={"url": url},  # type: ignore[arg-type]
        metering={"flush_interval_s": 0.05},  # type: ignore[arg-type]
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file in ``tmp_path``, or a fresh PostgreSQL database (``tests.databases``):
    the test's ``database_url`` parameter if it has one, else ``MODELGRID_TEST_DATABASE``."""
    with database(getattr(request, "param", None) or default_kind(), tmp_path) as url:
        yield url


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def fake_server(
    tmp_path: Path, fake_engine: FakeEngine, database_url: str
) -> Iterator[ThreadServer]:
    """A real uvicorn server over the scripted FakeEngine, with a tenant key in ``.api_key``."""
    settings = make_settings(tmp_path, database_url)
    server = ThreadServer(settings, lambda _s: [fake_engine])
    server.api_key = create_key(settings.database_url, name="test").plaintext  # type: ignore[attr-defined]
    server.start()
    yield server
    server.stop()
