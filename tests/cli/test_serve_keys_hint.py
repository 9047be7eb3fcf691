"""``modelgrid serve`` prints the first keys once; on a later start it says how to get
another, and the command it names works."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelgrid.cli import app
from modelgrid.cli.common import settings
from modelgrid.cli.serve_cmd import _bootstrap
from modelgrid.storage import migrate


def test_a_later_start_names_the_command_that_makes_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELGRID_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MODELGRID_ENGINE__MODELS", "[]")
    monkeypatch.setenv("MODELGRID_ENGINE__EMBEDDING_MODELS", "[]")
    s = settings()
    migrate.upgrade(s.database_url)

    _bootstrap(s)
    first = capsys.readouterr()
    assert first.out.count("admin key : mg-") == 1 and first.out.count("API key   : mg-") == 1

    _bootstrap(s)
    later = capsys.readouterr()
    assert "mg-" not in later.out  # no key is shown twice
    hint = " ".join(later.err.split())
    assert "modelgrid keys create --workspace default" in hint
    assert "modelgrid keys create --admin --workspace admin" in hint
    assert f"MODELGRID_DATA_DIR={tmp_path}" in hint  # which database the key goes to

    made = CliRunner().invoke(app, ["keys", "create", "--admin", "--workspace", "admin"])
    assert made.exit_code == 0, made.output
    assert "admin key mg-" in made.output and "in workspace 'admin'" in made.output
