"""Upstream models in the settings: indexed environment variables and a TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelgrid.config import Settings


def test_upstreams_from_indexed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGRID_UPSTREAMS__1__MODEL", "second")
    monkeypatch.setenv("MODELGRID_UPSTREAMS__1__BASE_URL", "http://b:8000/v1")
    monkeypatch.setenv("MODELGRID_UPSTREAMS__0__MODEL", "fake-gpt")
    monkeypatch.setenv("MODELGRID_UPSTREAMS__0__BASE_URL", "http://127.0.0.1:18080/v1")
    monkeypatch.setenv("MODELGRID_UPSTREAMS__0__UPSTREAM_MODEL", "fake-model")
    monkeypatch.setenv("MODELGRID_UPSTREAMS__0__API_KEY", "sk-secret")
    monkeypatch.setenv("MODELGRID_UPSTREAMS__0__READ_TIMEOUT_S", "12.5")
    monkeypatch.setenv("MODELGRID_ENGINE__MODELS", "[]")
    s = Settings()
    assert s.engine.models == []
    first, second = s.all_upstreams()
    assert (first.model, first.upstream_model, first.read_timeout_s) == (
        "fake-gpt",
        "fake-model",
        12.5,
    )
    assert first.api_key is not None and first.api_key.get_secret_value() == "sk-secret"
    assert (second.model, second.base_url) == ("second", "http://b:8000/v1")
    shown = s.masked()["upstreams"][0]
    assert shown["api_key"] == "**********" and "sk-secret" not in str(s.masked())


def test_upstreams_file_adds_to_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.toml"
    path.write_text(
        '[[upstreams]]\nmodel = "qwen-big"\nbase_url = "http://gpu1:8000/v1"\n'
        'upstream_model = "Qwen/Qwen2.5-72B-Instruct"\ncontext_length = 32768\n'
    )
    s = Settings(upstreams=[{"model": "a", "base_url": "http://a/v1"}], upstreams_file=path)  # type: ignore[list-item]
    assert [u.model for u in s.all_upstreams()] == ["a", "qwen-big"]
    assert s.all_upstreams()[1].context_length == 32768
