"""``modelgrid serve`` with a bad topology file ends with one line naming the file and the
problem, before it migrates, prints keys or listens (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"[[regions]\nid = 'x'", "invalid TOML"),
        (b"gateway_region = '\xff\xfe'", "not UTF-8"),
        (
            b"[[deployments]]\nmodel = 'm'\nregion = 'nowhere'\n[[deployments.replicas]]\n"
            b"kind = 'local'",
            "deployments[0].region: unknown region 'nowhere'",
        ),
        (  # a field's own rule: named by its path, never a pydantic dump
            "[[regions]]\nid = 'x'\njurisdiction = '\u00df'".encode(),
            "regions[0].jurisdiction: a jurisdiction is",
        ),
        (b"[[regions]]\nid = 'x'\ncolour = 'red'", "regions[0].colour: unknown key"),
        (None, "MODELGRID_TOPOLOGY_FILE is set but empty"),
    ],
)
def test_serve_refuses_a_bad_topology_file_in_one_line(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "topology.toml"
    if content is not None:
        path.write_bytes(content)
    env = {
        **os.environ,
        "MODELGRID_DATA_DIR": str(tmp_path),
        "MODELGRID_TOPOLOGY_FILE": str(path) if content is not None else "",
        "MODELGRID_ENGINE__MODELS": "[]",
        "MODELGRID_ENGINE__EMBEDDING_MODELS": "[]",
    }
    done = subprocess.run(
        [sys.executable, "-m", "modelgrid", "serve", "--port", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and problem in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "modelgrid.db").exists()  # nothing started
