"""``modelgrid knowledge``: an operator's view of a workspace's knowledge bases."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from modelgrid.cli import app
from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.knowledge.test_api_fake import GUIDE, make_kb, search, upload, wait_ready
from tests.support import db_rows

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_list_documents_and_delete(server_factory: ServerFactory) -> None:
    s = server_factory(FakeEngine(), HashEmbeddingEngine(), knowledge={"poll_interval_s": 0.05})
    kb = make_kb(s)
    doc = upload(s, kb["id"], GUIDE).json()
    wait_ready(s, kb["id"], doc["id"])
    env = {
        "MODELGRID_DATABASE__URL": s.settings.database_url,
        "MODELGRID_DATA_DIR": str(s.settings.data_dir),
        "COLUMNS": "200",
    }
    run = CliRunner()
    listed = run.invoke(app, ["knowledge", "list", "--workspace", "default", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["name"], row["documents"]) == (kb["id"], "support", {"ready": 1})
    docs = run.invoke(
        app, ["knowledge", "documents", kb["id"], "--workspace", "default", "--json"], env=env
    )
    [d] = json.loads(docs.stdout)
    assert (d["id"], d["status"], d["chunks_total"]) == (doc["id"], "ready", 3)
    wrong = run.invoke(app, ["knowledge", "documents", kb["id"], "--workspace", "nope"], env=env)
    assert wrong.exit_code == 1 and "No workspace 'nope'" in wrong.stderr
    gone = run.invoke(
        app,
        ["knowledge", "delete", kb["id"], "--workspace", "default", "--document", doc["id"]],
        env=env,
    )
    assert gone.exit_code == 0, gone.output
    assert db_rows(s, "SELECT count(*) AS n FROM knowledge_chunks")[0]["n"] == 0
    assert search(s, kb["id"], "refund", mode="lexical").json()["data"] == []
    audit = db_rows(s, "SELECT actor, action FROM audit_log WHERE action LIKE 'knowledge%'")
    assert [a["action"] for a in audit][-1] == "knowledge_document.delete"
    assert audit[-1]["actor"].startswith("cli:")
