"""kill -9 of the gateway under a running batch: after a restart the batch resumes and ends
with exactly one output or error line per input line, and at most one ledger row each."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from modelgrid.storage import db
from modelgrid.storage.filestore import FileStore
from modelgrid.storage.models import StoredFile
from tests import fake_gateway
from tests.support import ProcessServer, create_key, db_rows

pytestmark = pytest.mark.e2e

LINES = 240


def _put_file(db_url: str, data_dir: Path, workspace_id: str, data: bytes) -> str:
    file_id = "file-durable"
    store = FileStore(data_dir / "files")
    path = store.relative_path("local", workspace_id, file_id)
    store.write(path, [data])

    async def add() -> None:
        engine = db.create_engine(db_url)
        try:
            async with db.sessionmaker(engine)() as session, session.begin():
                session.add(
                    StoredFile(
                        id=file_id,
                        workspace_id=workspace_id,
                        region="local",
                        purpose="batch",
                        filename="in.jsonl",
                        bytes=len(data),
                        lines=LINES,
                        model="fake-model",
                        path=path,
                        created_at=datetime.now(UTC),
                    )
                )
        finally:
            await engine.dispose()

    asyncio.run(add())
    return file_id


def test_kill_9_mid_batch_loses_no_line_and_bills_none_twice(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'mg.db'}"
    key = create_key(db_url, name="batch")
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        }
        for i in range(LINES)
    ]
    data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    file_id = _put_file(db_url, tmp_path, key.workspace_id, data)
    env = {
        "MODELGRID_DATABASE__URL": db_url,
        "MODELGRID_DATA_DIR": str(tmp_path),
        "MODELGRID_ENGINE__MODELS": '["fake-model"]',
        "MODELGRID_ENGINE__ISOLATION": "in_process",
        "MODELGRID_BATCH__LEASE_S": "1.5",
        "MODELGRID_BOOTSTRAP_KEYS": "false",
        "MODELGRID_SERVER__LOG_LEVEL": "warning",
    }
    fake = fake_gateway.command(0.01)
    headers = {"Authorization": f"Bearer {key.plaintext}"}
    first = ProcessServer(env=env, log_path=tmp_path / "first.log", command=fake).start(60)
    r = httpx.post(
        f"{first.base_url}/v1/batches",
        headers=headers,
        json={
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    assert r.status_code == 200, r.text
    batch_id = r.json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        b = httpx.get(f"{first.base_url}/v1/batches/{batch_id}", headers=headers).json()
        if b["request_counts"]["completed"] >= 40:
            break
        time.sleep(0.05)
    first.proc.send_signal(signal.SIGKILL)
    first.stop()  # reaps it and closes its pipes
    done_before = db_rows(
        db_url, "SELECT COUNT(*) AS n FROM batch_results WHERE batch_id = :b", b=batch_id
    )[0]["n"]
    assert 40 <= done_before < LINES  # killed mid-batch

    second = ProcessServer(env=env, log_path=tmp_path / "second.log", command=fake).start(60)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            b = httpx.get(f"{second.base_url}/v1/batches/{batch_id}", headers=headers).json()
            if b["status"] == "completed":
                break
            time.sleep(0.1)
    finally:
        second.stop()
    assert b["status"] == "completed", b
    assert b["request_counts"] == {"total": LINES, "completed": LINES, "failed": 0}
    [out] = db_rows(db_url, "SELECT path FROM files WHERE id = :f", f=b["output_file_id"])
    got = [json.loads(x) for x in (tmp_path / "files" / out["path"]).read_bytes().splitlines()]
    assert [x["custom_id"] for x in got] == [f"r{i}" for i in range(LINES)]  # each once, in order
    ledger = db_rows(
        db_url,
        "SELECT custom_id, COUNT(*) AS n FROM usage_records WHERE batch_id = :b GROUP BY custom_id",
        b=batch_id,
    )
    assert len(ledger) == LINES and {row["n"] for row in ledger} == {1}
