from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelgrid.config import Settings
from modelgrid.engines.fake import FakeEngine
from tests.support import ThreadServer, create_key


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'mg.db'}"},  # type: ignore[arg-type]
        metering={"flush_interval_s": 0.05},  # type: ignore[arg-type]
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def fake_server(tmp_path: Path, fake_engine: FakeEngine) -> Iterator[ThreadServer]:
    """A real uvicorn server over the scripted FakeEngine, with a tenant key in ``.api_key``."""
    settings = make_settings(tmp_path)
    server = ThreadServer(settings, lambda _s: [fake_engine])
    server.api_key = create_key(settings.database_url, name="test").plaintext  # type: ignore[attr-defined]
    server.start()
    yield server
    server.stop()
