"""kill -9 under load: every request whose response was fully delivered has exactly one
usage record after a restart (the spool is replayed), and none has two."""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests import fake_gateway
from tests.support import ProcessServer, create_key, usage_rows

pytestmark = pytest.mark.e2e


def test_kill_9_loses_no_delivered_usage(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'mg.db'}"
    key = create_key(db_url, name="durable")
    env = {
        "MODELGRID_DATABASE__URL": db_url,
        "MODELGRID_DATA_DIR": str(tmp_path),
        "MODELGRID_ENGINE__MODELS": '["fake-model"]',
        "MODELGRID_METERING__FLUSH_INTERVAL_S": "3600",  # nothing reaches the DB before the kill
        "MODELGRID_METERING__BATCH_SIZE": "100000",
        "MODELGRID_BOOTSTRAP_KEYS": "false",
        "MODELGRID_SERVER__LOG_LEVEL": "warning",
    }
    fake = fake_gateway.command(0.002)
    server = ProcessServer(env=env, log_path=tmp_path / "first.log", command=fake).start(60)
    delivered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    headers = {"Authorization": f"Bearer {key.plaintext}"}

    def client(i: int) -> None:
        with httpx.Client(timeout=5) as c:
            n = 0
            while not stop.is_set():
                rid = f"c{i}-{n}-{secrets.token_hex(3)}"
                n += 1
                body = {
                    "model": "fake-model",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": n % 2 == 0,
                }
                try:
                    r = c.post(
                        f"{server.base_url}/v1/chat/completions",
                        json=body,
                        headers={**headers, "x-request-id": rid},
                    )
                except httpx.HTTPError:
                    continue
                complete = r.status_code == 200 and (
                    r.text.endswith("data: [DONE]\n\n")
                    if body["stream"]
                    else "usage" in json.loads(r.text)
                )
                if complete:
                    with lock:
                        delivered.append(rid)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    stop.set()
    for t in threads:
        t.join()
    server.log.close()
    assert server.proc.stdout is not None
    server.proc.stdout.close()
    assert len(delivered) > 50
    assert usage_rows(tmp_path / "mg.db", expect=0, timeout_s=0) == []  # all of it was in the spool

    restarted = ProcessServer(env=env, log_path=tmp_path / "second.log", command=fake).start(60)
    restarted.stop()  # recovery happens at start; graceful stop flushes
    rows = usage_rows(tmp_path / "mg.db", expect=len(delivered))
    by_client_id: dict[str, int] = {}
    for row in rows:
        by_client_id[str(row["client_request_id"])] = (
            by_client_id.get(str(row["client_request_id"]), 0) + 1
        )
    missing = [rid for rid in delivered if by_client_id.get(rid) != 1]
    assert missing == []
    assert max(by_client_id.values()) == 1
    assert list((tmp_path / "spool").glob("usage-*.jsonl")) == []
