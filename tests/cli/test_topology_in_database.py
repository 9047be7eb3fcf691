"""``modelgrid regions`` / ``deployments`` with ``control.topology_store = "database"``: the
CLI reads and changes the topology stored in the database (seeded from the topology file),
writes no file, and a running gateway on that database makes the change live within a
second."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelgrid.cli import app
from modelgrid.config import Settings
from modelgrid.engines.fake import FakeEngine
from tests.databases import migrated_sqlite
from tests.support import ThreadServer, db_rows, write_topology


def cli(url: str, data_dir: Path, *args: str) -> str:
    env = {
        "MODELGRID_DATABASE__URL": url,
        "MODELGRID_DATA_DIR": str(data_dir),
        "MODELGRID_CONTROL__TOPOLOGY_STORE": "database",
        "COLUMNS": "200",
    }
    r = CliRunner().invoke(app, list(args), env=env)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    assert r.exit_code == 0, r.stderr
    return r.stdout


@pytest.mark.timeout(60)
def test_cli_changes_the_stored_topology_and_a_gateway_follows(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path / "shared.db")
    cli_dir = tmp_path / "cli"
    write_topology(cli_dir / "topology.toml", {"local": "", "us-east-1": "US"}, gateway="local")
    cli(url, cli_dir, "regions", "add", "eu-west-1", "--jurisdiction", "ie")
    ids = [r["id"] for r in json.loads(cli(url, cli_dir, "regions", "--json"))]
    assert ids == ["local", "us-east-1", "eu-west-1"]  # the file seeded it, the change added
    [row] = db_rows(url, "SELECT version, document FROM control_state WHERE topic = 'topology'")
    assert row["version"] == 1 and 'id = "eu-west-1"' in row["document"]
    assert "eu-west-1" not in (cli_dir / "topology.toml").read_text()  # the file is not written

    settings = Settings(
        data_dir=tmp_path / "gw",
        database={"url": url},  # type: ignore[arg-type]
        control={"topology_store": "database"},  # type: ignore[arg-type]
    )
    gateway = ThreadServer(settings, lambda _s: [FakeEngine()]).start()
    try:
        region = gateway.state.grid.topology.region("eu-west-1")
        assert region is not None and region.enabled
        cli(url, cli_dir, "regions", "set", "eu-west-1", "--drain")
        start = time.monotonic()
        while gateway.state.grid.topology.region("eu-west-1").enabled:
            assert time.monotonic() - start < 1.0, "the gateway did not follow in 1 s"
            time.sleep(0.005)
    finally:
        gateway.stop()
