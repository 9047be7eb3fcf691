"""``modelgrid batches``: an operator's view of the batches in the database."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from modelgrid.cli import app
from modelgrid.cli.batches_cmd import progress
from tests.jobs.test_batch_runner import chat_line, create, jsonl, put_file, wait_for, workspace_of


def test_list_show_results_and_cancel(server_factory: Any) -> None:
    server = server_factory()
    key = server.api_key
    file_id = put_file(server, workspace_of(server, key), jsonl([chat_line(i) for i in range(3)]))
    b = create(server, key, file_id).json()
    wait_for(server, key, b["id"], {"completed"})
    env = {
        "MODELGRID_DATABASE__URL": server.settings.database_url,
        "MODELGRID_DATA_DIR": str(server.settings.data_dir),
        "COLUMNS": "200",
    }
    run = CliRunner()
    listed = run.invoke(app, ["batches", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["status"], row["request_counts"]["completed"]) == (
        b["id"],
        "completed",
        3,
    )
    shown = run.invoke(app, ["batches", "show", b["id"]], env=env)
    assert shown.stdout.strip() == f"{b['id']}: completed · 3/3 (100%)"
    out = run.invoke(app, ["batches", "results", b["id"]], env=env)
    assert [json.loads(x)["custom_id"] for x in out.stdout.splitlines()] == [
        "req-0",
        "req-1",
        "req-2",
    ]
    none = run.invoke(app, ["batches", "results", b["id"], "--errors"], env=env)
    assert none.exit_code == 1
    assert none.stderr.strip() == (
        f"Batch {b['id']} has no error file: it is completed and none of its requests failed."
    )
    ended = run.invoke(app, ["batches", "cancel", b["id"]], env=env)
    assert ended.exit_code == 1 and "cannot be cancelled" in ended.stderr
    missing = run.invoke(app, ["batches", "show", "batch_nope"], env=env)
    assert missing.exit_code == 1 and "No batch found" in missing.stderr


def test_progress_shows_rate_and_eta() -> None:
    b = {
        "status": "in_progress",
        "in_progress_at": 1000,
        "request_counts": {"total": 100, "completed": 18, "failed": 2},
    }
    assert progress(b, now=1010) == "20/100 (20%) · 2.0 lines/s · ETA 40 s"
    assert (
        progress(
            {
                **b,
                "status": "validating",
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
            }
        )
        == "validating"
    )
