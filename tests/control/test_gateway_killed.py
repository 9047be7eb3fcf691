"""A gateway killed under load (#16): three gateway processes on one PostgreSQL and one Redis,
load spread over all three, ``kill -9`` of one mid-load. The two others serve every request
sent to them without an error; the killed one's spool (its usage of the last hour: it never
flushed) is replayed when it starts again on its data directory; then the ledger holds exactly
one row for every request whose response a client received in full, and none twice."""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import fake_gateway
from tests.databases import postgres_database
from tests.support import ProcessServer, create_key, db_rows

REDIS_URL = "redis://127.0.0.1:6379/14"
CLIENTS = 6
VICTIM = 0


@dataclass
class Call:
    gateway: int
    rid: str
    sent_s: float  # since the load started
    outcome: str  # "complete", "status <n>", or the transport error's class


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def _env(pg_url: str, data_dir: Path, *, flush_interval_s: float) -> dict[str, str]:
    return {
        "MODELGRID_DATABASE__URL": pg_url,
        "MODELGRID_DATA_DIR": str(data_dir),
        "MODELGRID_ENGINE__MODELS": '["fake-model"]',
        "MODELGRID_ENGINE__ISOLATION": "in_process",
        "MODELGRID_RATELIMIT__BACKEND": "redis",
        "MODELGRID_RATELIMIT__REDIS_URL": REDIS_URL,
        "MODELGRID_METERING__FLUSH_INTERVAL_S": str(flush_interval_s),
        "MODELGRID_METERING__BATCH_SIZE": "100000",
        "MODELGRID_BOOTSTRAP_KEYS": "false",
        "MODELGRID_SERVER__LOG_LEVEL": "warning",
    }


def _complete(r: httpx.Response, stream: bool) -> bool:
    if r.status_code != 200:
        return False
    return r.text.endswith("data: [DONE]\n\n") if stream else "usage" in json.loads(r.text)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(180)
def test_a_gateway_killed_under_load_loses_no_usage(tmp_path: Path, pg_url: str) -> None:
    key = create_key(pg_url, name="load")
    fake = fake_gateway.command(0.002)
    # The victim never flushes before the kill: all its usage is in its spool.
    envs = [
        _env(pg_url, tmp_path / f"gw{i}", flush_interval_s=3600 if i == VICTIM else 0.05)
        for i in range(3)
    ]
    gateways = [
        ProcessServer(env=e, log_path=tmp_path / f"gw{i}.log", command=fake)
        for i, e in enumerate(envs)
    ]
    restarted: ProcessServer | None = None
    try:
        for g in gateways:
            g.start(60)
        calls: list[Call] = []
        lock = threading.Lock()
        stop = threading.Event()
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {key.plaintext}"}

        def client(i: int) -> None:
            clients = [httpx.Client(base_url=g.base_url, timeout=10) for g in gateways]
            try:
                n = 0
                while not stop.is_set():
                    gw = (i + n) % 3
                    rid = f"k{i}-{n}-{secrets.token_hex(3)}"
                    stream = n % 2 == 0
                    n += 1
                    body = {
                        "model": "fake-model",
                        "messages": [{"role": "user", "content": "hi"}],
                        "stream": stream,
                    }
                    sent_s = time.monotonic() - started
                    try:
                        r = clients[gw].post(
                            "/v1/chat/completions",
                            json=body,
                            headers={**headers, "x-request-id": rid},
                        )
                        outcome = "complete" if _complete(r, stream) else f"status {r.status_code}"
                    except httpx.HTTPError as exc:
                        outcome = type(exc).__name__
                    with lock:
                        calls.append(Call(gw, rid, sent_s, outcome))
            finally:
                for c in clients:
                    c.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        gateways[VICTIM].proc.send_signal(signal.SIGKILL)
        killed_s = time.monotonic() - started
        gateways[VICTIM].proc.wait(10)
        time.sleep(2.0)  # the survivors carry the load on
        stop.set()
        for t in threads:
            t.join(30)

        survivors = [c for c in calls if c.gateway != VICTIM]
        after_kill = [c for c in survivors if c.sent_s > killed_s]
        victim = [c for c in calls if c.gateway == VICTIM]
        victim_failed = [c for c in victim if c.outcome != "complete"]
        print(
            f"KILLED calls {len(calls)}: survivors {len(survivors)} ({len(after_kill)} after"
            f" the kill), victim {len(victim)} ({len(victim_failed)} failed)"
        )
        assert [c for c in survivors if c.outcome != "complete"] == []
        assert len(after_kill) > 20  # the survivors did carry the load on
        # The victim's failures: requests in flight at the kill, or sent to it afterwards.
        assert all(c.sent_s > killed_s - 1.0 for c in victim_failed)
        in_flight = [c for c in victim_failed if c.sent_s <= killed_s]
        assert len(in_flight) <= CLIENTS

        delivered = {c.rid for c in calls if c.outcome == "complete"}
        assert len([c for c in victim if c.outcome == "complete"]) > 10
        victim_delivered = {c.rid for c in victim if c.outcome == "complete"}
        stored = _ledger(pg_url, key.key_id)
        assert not victim_delivered & set(stored)  # all the victim's usage is in its spool

        restarted = ProcessServer(
            env=envs[VICTIM], log_path=tmp_path / "gw0-again.log", command=fake
        ).start(60)
        deadline = time.monotonic() + 20
        while not delivered <= set(stored := _ledger(pg_url, key.key_id)):
            assert time.monotonic() < deadline, f"missing: {sorted(delivered - set(stored))}"
            time.sleep(0.1)
        assert [rid for rid, n in stored.items() if n != 1] == []  # none twice
        extra = set(stored) - delivered  # recorded, but the client never got the whole answer
        print(
            f"KILLED ledger {len(stored)} rows: {len(delivered)} delivered, {len(extra)} of the"
            f" {len(in_flight)} in flight at the kill"
        )
        assert extra <= {c.rid for c in in_flight}
        spool = (tmp_path / f"gw{VICTIM}" / "spool").glob("usage-*.jsonl")
        replayed = gateways[VICTIM].proc.pid
        assert [p.name for p in spool if p.name.startswith(f"usage-{replayed}-")] == []
    finally:
        for g in [*gateways, *([restarted] if restarted else [])]:
            if g.proc.poll() is None:
                g.stop()
            else:
                g.log.close()
                if g.proc.stdout is not None:
                    g.proc.stdout.close()


def _ledger(pg_url: str, key_id: str) -> dict[str, int]:
    """Each client request id of the key's usage rows -> how many rows carry it."""
    rows = db_rows(
        pg_url,
        "SELECT client_request_id AS rid, count(*) AS n FROM usage_records"
        " WHERE api_key_id = :k GROUP BY client_request_id",
        k=key_id,
    )
    return {str(r["rid"]): int(r["n"]) for r in rows}
