"""``modelgrid engine``'s options: the scripted engine is for tests, never offered in --help."""

from __future__ import annotations

from typer.testing import CliRunner

from modelgrid.cli import app


def test_help_offers_no_test_engine() -> None:
    done = CliRunner().invoke(app, ["engine", "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "--engine" in done.output and "embedding" in done.output
    assert "fake" not in done.output.lower()


def test_settings_hold_no_test_knobs() -> None:
    from modelgrid.config import EngineSettings, Settings

    assert "engine_kind" not in Settings.model_fields
    assert not [f for f in EngineSettings.model_fields if "fake" in f]
