"""The packaged embedding models: lazy imports, skipping what is not installed, wire helpers."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from modelgrid.engines import embedding
from modelgrid.protocol.openai.embeddings import floats


def test_app_and_cli_do_not_import_torch() -> None:
    code = (
        "import sys; from modelgrid.cli import app; import modelgrid.app; "
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_not_installed_model_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(embedding, "installed", lambda _model_id: False)
    with caplog.at_level(logging.WARNING, logger="modelgrid.engines"):
        assert embedding.build_embedding_engines(["all-minilm-l6-v2"]) == []
    assert "modelgrid[embeddings]" in caplog.text


def test_unknown_model_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        embedding.build_embedding_engines(["no-such-model"])


def test_floats_are_the_exact_float32_values() -> None:
    raw = bytes.fromhex("0000803e0000003fcdcccc3d")  # 0.25, 0.5, float32(0.1)
    assert floats(raw) == [0.25, 0.5, 0.10000000149011612]
