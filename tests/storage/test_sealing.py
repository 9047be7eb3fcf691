"""Secrets sealed at rest (``storage.sealing``): the key from the setting or the data dir's
file, sealing and opening, a value of before sealing, another key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from modelgrid.config import Settings
from modelgrid.core.errors import SealedSecretError
from modelgrid.storage.sealing import PREFIX, Sealer, sealer_for


def test_the_data_dirs_key_is_made_once_for_its_owner_only(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "d")
    first = sealer_for(s)
    path = tmp_path / "d" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.key"]  # no temp left
    sealed = first.seal("svc-secret")
    assert sealed.startswith(PREFIX) and "svc-secret" not in sealed
    assert sealer_for(s).open(sealed) == "svc-secret"  # the same key, read back
    twice = first.seal(sealed)  # a value that reads like a sealed one is sealed like any
    assert twice != sealed and first.open(twice) == sealed
    assert first.open("plain-of-before") == "plain-of-before"


def test_the_setting_wins_and_a_bad_key_is_named(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    s = Settings(data_dir=tmp_path, secret_key=key)
    assert Sealer(key).open(sealer_for(s).seal("x")) == "x"
    assert not (tmp_path / "secret.key").exists()
    with pytest.raises(ValueError, match="MODELGRID_SECRET_KEY is no Fernet key"):
        sealer_for(Settings(data_dir=tmp_path, secret_key="short"))
    (tmp_path / "secret.key").write_text("not a key\n")
    with pytest.raises(ValueError, match=r"secret\.key holds no Fernet key"):
        sealer_for(Settings(data_dir=tmp_path))


def test_another_keys_value_is_refused_by_name_never_returned() -> None:
    sealed = Sealer(Fernet.generate_key()).seal("svc-secret")
    with pytest.raises(SealedSecretError, match="MODELGRID_SECRET_KEY") as info:
        Sealer(Fernet.generate_key()).open(sealed)
    assert info.value.status == 503 and "svc-secret" not in info.value.message
    tool = {"name": "w", "headers": {"X-Api-Key": "k"}}
    sealer = Sealer(Fernet.generate_key())
    sealed_tool = sealer.seal_headers(tool)
    assert sealed_tool["name"] == "w" and tool["headers"]["X-Api-Key"] == "k"  # a copy
    assert sealer.open_headers(sealed_tool)["headers"]["X-Api-Key"] == "k"
