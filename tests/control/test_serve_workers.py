"""``modelgrid serve --workers N`` (#16): N gateway processes on one port, as a user starts it,
in front of a ``modelgrid engine`` (the scripted engine) declared as an upstream. Requests are
served by every worker (each answer names its worker's pid in ``x-modelgrid-worker``), each
request is recorded exactly once, and a key revoked through one worker is refused by all
within a second (on SQLite: the epoch file and the polled change counters). With an embedded
model, ``--workers`` is refused with one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import migrated_sqlite, postgres_database
from tests.routing.workers import Worker, start_all
from tests.support import REPO, ProcessServer, create_key, usage_rows_matching

TOKEN = "workers-upstream-token"
REDIS_URL = "redis://127.0.0.1:6379/14"
CONCURRENT = 4
LIMIT_S = 1.0
BODY = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Worker]:
    [w] = start_all([Worker("local", "up", token=TOKEN, token_delay_s=0)], tmp_path)
    try:
        yield w
    finally:
        w.stop()


def _env(tmp_path: Path, db_url: str, upstream: Worker) -> dict[str, str]:
    return {
        "MODELGRID_DATA_DIR": str(tmp_path / "gw"),
        "MODELGRID_DATABASE__URL": db_url,
        "MODELGRID_METERING__FLUSH_INTERVAL_S": "0.05",
        "MODELGRID_AUTH__CACHE_TTL_S": "60",  # only the change feed can explain a refusal
        "MODELGRID_BOOTSTRAP_KEYS": "false",
        "MODELGRID_SERVER__LOG_LEVEL": "warning",
        "MODELGRID_ENGINE__MODELS": "[]",
        "MODELGRID_ENGINE__EMBEDDING_MODELS": "[]",
        "MODELGRID_UPSTREAMS__0__MODEL": "gpt-fake",
        "MODELGRID_UPSTREAMS__0__BASE_URL": upstream.base_url,
        "MODELGRID_UPSTREAMS__0__UPSTREAM_MODEL": "fake-model",
        "MODELGRID_UPSTREAMS__0__API_KEY": TOKEN,
    }


def _rows(db_url: str, key_id: str, n: int) -> list[dict[str, Any]]:
    """The key's usage rows once there are ``n`` (or more), or after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        rows = usage_rows_matching(db_url, api_key_id=key_id)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def _parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise LookupError(pid)


def _call(base_url: str, key: str) -> tuple[int, str]:
    """One chat completion on a new connection (the kernel hands each to a worker)."""
    with httpx.Client(timeout=10) as http:
        r = http.post(
            f"{base_url}/v1/chat/completions",
            json=BODY,
            headers={"Authorization": f"Bearer {key}", "Connection": "close"},
        )
    assert r.status_code in (200, 401), r.text
    return r.status_code, r.headers["x-modelgrid-worker"]


def _calls(base_url: str, key: str) -> list[tuple[int, str]]:
    """``CONCURRENT`` calls at once, each on its own connection: sent one after another, the
    worker that just answered tends to win every next accept (19/1 was seen), and on a loaded
    machine the other may get none for a long time; calls at once reach both."""
    with ThreadPoolExecutor(CONCURRENT) as pool:
        return list(pool.map(lambda _: _call(base_url, key), range(CONCURRENT)))


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The control plane the workers share: one SQLite file (the change feed is the poll),
    or PostgreSQL (LISTEN/NOTIFY) with the limiter on Redis."""
    if request.param == "sqlite":
        yield {"MODELGRID_DATABASE__URL": migrated_sqlite(tmp_path / "mg.db")}
        return
    with postgres_database() as url:
        yield {
            "MODELGRID_DATABASE__URL": url,
            "MODELGRID_RATELIMIT__BACKEND": "redis",
            "MODELGRID_RATELIMIT__REDIS_URL": REDIS_URL,
        }


@pytest.mark.timeout(180)
def test_two_workers_share_the_port_the_ledger_and_revocations(
    tmp_path: Path, upstream: Worker, shared: dict[str, str]
) -> None:
    db_url = shared["MODELGRID_DATABASE__URL"]
    tenant = create_key(db_url, name="tenant")
    admin = create_key(db_url, role="admin", workspace="admin").plaintext
    gw = ProcessServer(
        env={**_env(tmp_path, db_url, upstream), **shared},
        log_path=tmp_path / "gw.log",
        command=("-m", "modelgrid", "serve", "--workers", "2"),
    )
    gw.start(120)
    try:
        # Requests until both workers have answered (each on its own connection).
        served: dict[str, int] = {}
        n = 0
        deadline = time.monotonic() + 60
        while (len(served) < 2 or n < 20) and time.monotonic() < deadline:
            for status, pid in _calls(gw.base_url, tenant.plaintext):
                assert status == 200
                served[pid] = served.get(pid, 0) + 1
                n += 1
        print(f"WORKERS requests per worker pid: {served}")
        assert len(served) == 2, served
        assert {_parent_of(int(p)) for p in served} == {gw.proc.pid}  # uvicorn's workers

        # Usage: one row per request, whichever worker served it.
        rows = _rows(db_url, tenant.key_id, n)
        assert len(rows) == n and len({r["request_id"] for r in rows}) == n
        assert {r["status"] for r in rows} == {200}

        # Revoked through one worker: refused by both within a second.
        r = httpx.delete(
            f"{gw.base_url}/admin/v1/keys/{tenant.key_id}",
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        revoked_at = time.monotonic()
        seen: list[tuple[float, int, str]] = []
        while (
            time.monotonic() - revoked_at < LIMIT_S + 1.0
            or len({pid for t, _, pid in seen if t > LIMIT_S}) < 2
        ):
            sent_s = time.monotonic() - revoked_at
            seen += [(sent_s, status, pid) for status, pid in _calls(gw.base_url, tenant.plaintext)]
            assert time.monotonic() - revoked_at < 30, "a worker never answered after 1 s"
        last_ok = max((t for t, status, _ in seen if status == 200), default=0.0)
        print(f"WORKERS revocation: last 200 at {last_ok * 1000:.0f} ms, {len(seen)} calls")
        late = [(t, s, p) for t, s, p in seen if t > LIMIT_S]
        assert {s for _, s, _ in late} == {401}, late
        assert {p for _, _, p in late} == set(served)
        time.sleep(0.3)  # the refused calls consumed no tokens: still n rows
        assert len(_rows(db_url, tenant.key_id, n)) == n
    finally:
        gw.stop()


@pytest.mark.timeout(180)
def test_a_killed_worker_is_replaced_and_its_usage_replayed(
    tmp_path: Path, upstream: Worker
) -> None:
    """``kill -9`` of one worker: uvicorn starts another, which replays the dead one's spool
    (nothing was flushed: the flush interval is an hour); after a graceful stop the ledger
    holds every answered request exactly once."""
    db_url = migrated_sqlite(tmp_path / "mg.db")
    tenant = create_key(db_url, name="tenant")
    env = {
        **_env(tmp_path, db_url, upstream),
        "MODELGRID_METERING__FLUSH_INTERVAL_S": "3600",
        "MODELGRID_METERING__BATCH_SIZE": "100000",
    }
    gw = ProcessServer(
        env=env,
        log_path=tmp_path / "gw.log",
        command=("-m", "modelgrid", "serve", "--workers", "2"),
    )
    gw.start(120)
    answered = 0
    try:
        per_pid: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while len(per_pid) < 2 or answered < 10:
            assert time.monotonic() < deadline
            for status, pid in _calls(gw.base_url, tenant.plaintext):
                assert status == 200
                per_pid[pid] = per_pid.get(pid, 0) + 1
                answered += 1
        served = set(per_pid)
        victim = sorted(served)[0]
        os.kill(int(victim), signal.SIGKILL)
        killed_at = time.monotonic()
        replaced: set[str] = set()
        while not replaced:  # calls go on meanwhile, all answered by the live worker(s)
            assert time.monotonic() < killed_at + 60, "the dead worker was not replaced"
            for status, pid in _calls(gw.base_url, tenant.plaintext):
                assert status == 200 and pid != victim
                answered += 1
                replaced |= {pid} - served
            time.sleep(0.02)
        assert _parent_of(int(replaced.pop())) == gw.proc.pid
        print(f"WORKERS replaced in {time.monotonic() - killed_at:.1f} s, {answered} answered")
        # Nothing was flushed: the ledger holds exactly what the new worker replayed at its
        # start, the dead worker's requests.
        assert len(_rows(db_url, tenant.key_id, per_pid[victim])) == per_pid[victim]
    finally:
        assert gw.stop() == 0  # graceful: the live workers flush their spools
    rows = _rows(db_url, tenant.key_id, answered)
    assert len(rows) == answered and len({r["request_id"] for r in rows}) == answered
    assert list((tmp_path / "gw" / "spool").glob("usage-*.jsonl")) == []


def test_workers_with_an_embedded_model_are_refused(tmp_path: Path) -> None:
    env = {
        "MODELGRID_DATA_DIR": str(tmp_path),
        "MODELGRID_ENGINE__MODELS": '["qwen2.5-coder-0.5b-instruct"]',
        "MODELGRID_ENGINE__EMBEDDING_MODELS": "[]",
        "PATH": "/usr/bin:/bin",
    }
    r = subprocess.run(
        [sys.executable, "-m", "modelgrid", "serve", "--workers", "2", "--port", "1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 2
    err = " ".join(r.stderr.decode().split())
    assert "--workers 2 serves upstream models only" in err
    assert "qwen2.5-coder-0.5b-instruct" in err
    assert "Traceback" not in err
    assert not (tmp_path / "modelgrid.db").exists()  # refused before anything started
