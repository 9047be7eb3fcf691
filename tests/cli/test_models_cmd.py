"""``modelgrid models``: every packaged model, chat and embeddings, with its kind."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from modelgrid.cli import app, models_cmd
from modelgrid.engines import embedding


def test_models_lists_chat_and_embedding_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the CLI's console takes its width when imported: wide here, so no cell wraps
    monkeypatch.setattr(models_cmd, "console", Console(width=200))
    env = {"MODELGRID_DATA_DIR": str(tmp_path)}  # nothing prepared there
    done = CliRunner().invoke(app, ["models"], env=env)
    assert done.exit_code == 0, done.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in done.output.splitlines() if line.startswith("│")}  # fmt: skip
    assert rows["qwen2.5-coder-0.5b-instruct"][0] == "chat"
    assert rows["qwen2.5-coder-0.5b-instruct"][2] == "-"  # not prepared in this data dir
    found = "yes" if embedding.installed("all-minilm-l6-v2") else "no"
    assert rows["all-minilm-l6-v2"] == ["embeddings", found, "- (its package)", "embeddings"]


def test_prepare_or_exit_names_an_unknown_model_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import typer

    monkeypatch.setattr(models_cmd, "err_console", Console(width=300, stderr=True))
    with pytest.raises(typer.Exit) as done:
        models_cmd.prepare_or_exit(["gpt-9"], tmp_path)
    assert done.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.startswith("unknown model 'gpt-9': the packaged models are ")
    assert "qwen2.5-coder-0.5b-instruct" in err and "Traceback" not in err


def test_serve_refuses_a_port_out_of_range() -> None:
    done = CliRunner().invoke(app, ["serve", "--port", "99999"])
    assert done.exit_code == 2
    assert "less than or equal to 65535" in done.output and "Traceback" not in done.output
