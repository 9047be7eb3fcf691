"""``modelgrid apps``: create, list, show, set, delete a workspace's apps from the command
line, through the control plane (checked and audited as the API's are)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_admin_cli import cli
from tests.databases import BOTH_DATABASES
from tests.support import db_rows, write_topology


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELGRID_DATA_DIR", str(tmp_path))
    return tmp_path


@BOTH_DATABASES
def test_apps_round_trip(database_url: str, tmp_path: Path) -> None:
    url = database_url
    write_topology(tmp_path / "topology.toml", {"eu": "DE"}, ["m1"], gateway="eu")
    cli(url, "workspaces", "create", "acme", "--regions", "eu")
    made = json.loads(
        cli(
            url,
            "apps",
            "create",
            "helpdesk",
            "--workspace",
            "acme",
            "--model",
            "m1",
            "--instructions",
            "Be brief.",
            "--top-k",
            "3",
            "--json",
        ).stdout
    )
    assert (made["name"], made["model"], made["instructions"]) == ("helpdesk", "m1", "Be brief.")
    assert made["retrieval"] == {
        "top_k": 3,
        "mode": "hybrid",
        "query_rewrite": "concat",
        "rerank": False,
    }
    assert made["memory_extraction"] == "rules"
    app_id = made["id"]
    listed = json.loads(cli(url, "apps", "list", "--workspace", "acme", "--json").stdout)
    assert [a["id"] for a in listed] == [app_id]
    changed = json.loads(
        cli(url, "apps", "set", app_id, "--workspace", "acme", "--mode", "lexical", "--json").stdout
    )
    assert changed["retrieval"] == {
        "top_k": 3,
        "mode": "lexical",
        "query_rewrite": "concat",
        "rerank": False,
    }
    changed = json.loads(
        cli(
            url,
            "apps",
            "set",
            app_id,
            "--workspace",
            "acme",
            "--query-rewrite",
            "model",
            "--memory-extraction",
            "model",
            "--rerank",
            "--json",
        ).stdout
    )
    assert changed["retrieval"] == {
        "top_k": 3,
        "mode": "lexical",
        "query_rewrite": "model",
        "rerank": True,
    }
    assert changed["memory_extraction"] == "model"
    bad = cli(url, "apps", "set", app_id, "--workspace", "acme", "--query-rewrite", "llm", ok=False)
    assert bad.returncode != 0 and b"query_rewrite" in bad.stdout + bad.stderr
    shown = cli(url, "apps", "show", app_id, "--workspace", "acme").stdout.decode()
    assert "helpdesk" in shown and "query rewrite model, rerank on," in shown
    # --no-rerank turns it off and keeps the rest of the retrieval settings
    changed = json.loads(
        cli(url, "apps", "set", app_id, "--workspace", "acme", "--no-rerank", "--json").stdout
    )
    assert changed["retrieval"] == {
        "top_k": 3,
        "mode": "lexical",
        "query_rewrite": "model",
        "rerank": False,
    }

    # checked like the API: an unknown model or knowledge base is refused, nothing written
    bad = cli(url, "apps", "create", "x", "--workspace", "acme", "--model", "m9", ok=False)
    assert bad.returncode != 0 and b"m9" in bad.stdout + bad.stderr
    bad = cli(
        url,
        "apps",
        "create",
        "x",
        "--workspace",
        "acme",
        "--model",
        "m1",
        "--knowledge-bases",
        "kb-nope",
        ok=False,
    )
    assert bad.returncode != 0 and b"kb-nope" in bad.stdout + bad.stderr
    # another workspace's app is not found from this one
    cli(url, "workspaces", "create", "other", "--regions", "eu")
    missing = cli(url, "apps", "show", app_id, "--workspace", "other", ok=False)
    assert missing.returncode != 0 and b"No such app" in missing.stdout + missing.stderr

    gone = json.loads(cli(url, "apps", "delete", app_id, "--workspace", "acme", "--json").stdout)
    assert gone == {"id": app_id, "object": "app.deleted", "deleted": True, "sessions": 0}
    assert json.loads(cli(url, "apps", "list", "--workspace", "acme", "--json").stdout) == []
    actions = db_rows(url, "SELECT action, actor FROM audit_log WHERE action LIKE 'app.%'")
    assert [a["action"] for a in actions] == [
        "app.create",
        "app.update",
        "app.update",
        "app.update",
        "app.delete",
    ]
    assert all(a["actor"].startswith("cli:") for a in actions)
