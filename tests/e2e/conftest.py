"""One real `modelgrid serve` process with the packaged model, shared by the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ProcessServer


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessServer]:
    """``python -m modelgrid serve`` on a fresh SQLite file; the packaged model from the default
    data directory. ``.api_key`` / ``.admin_key`` are the keys it printed on first start."""
    tmp: Path = tmp_path_factory.mktemp("model-server")
    server = ProcessServer(
        env={
            "MODELGRID_DATABASE__URL": f"sqlite+aiosqlite:///{tmp / 'mg.db'}",
            "MODELGRID_METERING__FLUSH_INTERVAL_S": "0.05",
            "MODELGRID_ENGINE__N_CTX": "2048",
            # A killed engine process's restart (Python, torch's import, the model) took over
            # the 15 s default under the whole suite's load on a 2-core AVX2-only machine.
            "MODELGRID_ENGINE__RESTART_WAIT_S": "60",
            # apps' plugins served by the tests on loopback (tests/e2e/test_app_tools_model.py)
            "MODELGRID_APPS__PLUGIN_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        },
        log_path=tmp / "server.log",
    )
    server.db_path = tmp / "mg.db"  # type: ignore[attr-defined]
    server.start()
    server.api_key = server.printed_key("API key")  # type: ignore[attr-defined]
    server.admin_key = server.printed_key("admin key")  # type: ignore[attr-defined]
    yield server
    server.stop()
