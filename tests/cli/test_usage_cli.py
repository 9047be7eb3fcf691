"""``modelgrid usage`` and ``modelgrid invoice`` read the roll-ups and print what summing the
ledger gives; ``modelgrid db rebuild-rollups`` recomputes them (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_admin_cli import cli
from tests.databases import BOTH_DATABASES, insert_usage, with_sessions
from tests.support import db_execute
from tests.tenancy.test_usage_rollups import ledger


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELGRID_DATA_DIR", str(tmp_path))
    return tmp_path


def _totals(rows: list[dict[str, Any]], col: str) -> list[dict[str, Any]]:
    acc: dict[str | None, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        v = acc[r[col]]
        v[0] += 1
        v[1] += r["prompt_tokens"]
        v[2] += r["completion_tokens"]
    return [
        {"group": str(g), "requests": n, "prompt_tokens": p, "completion_tokens": c}
        for g, (n, p, c) in acc.items()
    ]


@BOTH_DATABASES
def test_usage_json_equals_the_ledger_and_survives_a_rebuild(database_url: str) -> None:
    rows = [r for r in ledger(300, seed=21) if r["api_key_id"] is not None]
    with_sessions(database_url, lambda s: insert_usage(s, rows))
    out = json.loads(cli(database_url, "usage", "--json").stdout)
    key = lambda d: d["group"]  # noqa: E731
    assert out["by_key"] == sorted(_totals(rows, "api_key_id"), key=key)
    assert out["by_model"] == sorted(_totals(rows, "model"), key=key)
    db_execute(database_url, "DELETE FROM usage_rollups")
    db_execute(database_url, "DELETE FROM usage_workspace_rollups")
    assert json.loads(cli(database_url, "usage", "--json").stdout) == {
        "by_key": [],
        "by_model": [],
    }
    done = cli(database_url, "db", "rebuild-rollups").stdout.decode()
    assert "usage_rollups rebuilt" in done
    assert json.loads(cli(database_url, "usage", "--json").stdout) == out


def test_an_unreachable_database_is_one_line_not_a_traceback() -> None:
    out = cli("postgresql+asyncpg://u:p@127.0.0.1:1/none", "usage", ok=False)
    err = out.stderr.decode()
    assert out.returncode == 1 and "Connect call failed ('127.0.0.1', 1)" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
