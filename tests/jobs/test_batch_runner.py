"""The batch runner over a real gateway (scripted engine): every line answered once and
billed once at the batch price, failed lines free, cancel and expiry, resumption after a
lost runner, fairness between workspaces."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from modelgrid.protocol.admin import PriceCreate
from modelgrid.storage import db
from modelgrid.storage.models import StoredFile
from modelgrid.tenancy import billing
from tests.conftest import make_settings
from tests.support import ThreadServer, control_plane, db_execute, db_rows

MODEL = "fake-model"


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def chat_line(i: int, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": f"Hi {i}"}], **body},
    }


def put_file(server: ThreadServer, workspace_id: str, data: bytes) -> str:
    """An uploaded batch input (as the Files API stores one), straight into the store."""
    st = server.state
    file_id = f"file-test{time.monotonic_ns()}"
    region = st.control.inventory().gateway_region
    store = st.batch_runner._store
    path = store.relative_path(region, workspace_id, file_id)
    store.write(path, [data])

    async def add() -> None:
        async with st.sessions() as session, session.begin():
            session.add(
                StoredFile(
                    id=file_id,
                    workspace_id=workspace_id,
                    region=region,
                    purpose="batch",
                    filename="in.jsonl",
                    bytes=len(data),
                    lines=data.count(b"\n"),
                    model=MODEL,
                    path=path,
                    created_at=datetime.now(UTC),
                )
            )

    server.call(add())
    return file_id


def workspace_of(server: ThreadServer, key: str) -> str:
    [row] = db_rows(
        server, "SELECT workspace_id FROM api_keys WHERE id = :id", id=key.split("_")[0][3:]
    )
    return str(row["workspace_id"])


def wait_for(
    server: ThreadServer, key: str, batch_id: str, statuses: set[str], timeout_s: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}) as http:
        while True:
            b = http.get(f"/v1/batches/{batch_id}").json()
            if b["status"] in statuses or time.monotonic() > deadline:
                return dict(b)
            time.sleep(0.05)


def file_lines(server: ThreadServer, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    [row] = db_rows(server, "SELECT path FROM files WHERE id = :id", id=file_id)
    data = (server.settings.data_dir / "files" / row["path"]).read_bytes()
    return [json.loads(x) for x in data.splitlines()]


def add_price(server: ThreadServer) -> None:
    async def go() -> None:
        engine = db.create_engine(server.settings.database_url)
        try:
            await control_plane(db.sessionmaker(engine), MODEL).prices.add(
                PriceCreate(
                    model=MODEL, input_micros_per_1m=1_000_000, output_micros_per_1m=2_000_000
                ),
                actor="t",
            )
        finally:
            await engine.dispose()

    asyncio.run(go())
    server.call(server.state.tenancy.reload_prices())


def create(
    server: ThreadServer, key: str, file_id: str, endpoint: str = "/v1/chat/completions"
) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/batches",
        headers={"Authorization": f"Bearer {key}"},
        json={"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h"},
    )


def test_every_line_answered_and_billed_once_at_the_batch_price(server_factory: Any) -> None:
    server = server_factory(FakeEngine(MODEL, "four words of reply"))
    add_price(server)
    key = server.api_key
    lines = [chat_line(i) for i in range(40)]
    lines[7] = chat_line(7, max_tokens=-1)  # fails validation: an error line, free
    file_id = put_file(server, workspace_of(server, key), jsonl(lines))
    r = create(server, key, file_id)
    assert r.status_code == 200, r.text
    created = r.json()
    assert (created["status"], created["endpoint"], created["model"]) == (
        "validating",
        "/v1/chat/completions",
        MODEL,
    )
    done = wait_for(server, key, created["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": 40, "completed": 39, "failed": 1}
    out = file_lines(server, done["output_file_id"])
    err = file_lines(server, done["error_file_id"])
    assert [x["custom_id"] for x in out] == [f"req-{i}" for i in range(40) if i != 7]
    assert [x["custom_id"] for x in err] == ["req-7"]
    assert err[0]["response"]["status_code"] == 400
    assert err[0]["response"]["body"]["error"]["param"] == "max_tokens"
    first = out[0]["response"]
    assert first["status_code"] == 200 and first["body"]["object"] == "chat.completion"
    rows = db_rows(
        server,
        "SELECT custom_id, prompt_tokens, completion_tokens, cost_micros FROM usage_records "
        "WHERE batch_id = :b ORDER BY custom_id",
        b=created["id"],
    )
    assert len(rows) == 39  # the invalid line never reached an engine: nothing to record
    for row in rows:
        full = row["prompt_tokens"] * 1 + row["completion_tokens"] * 2  # micros at 1 / 2 per token
        assert row["cost_micros"] == (full * 50 + 50) // 100  # half price, rounded once
    usage = done["usage"]
    assert usage["input_tokens"] == sum(r["prompt_tokens"] for r in rows)
    assert usage["output_tokens"] == sum(r["completion_tokens"] for r in rows)
    month = f"{datetime.now(UTC):%Y-%m}"
    inv = server.call(billing.invoice(server.state.sessions, workspace_of(server, key), month))
    [line] = inv.lines  # no online request this month: the batch's line alone, marked
    assert (line.batch, line.requests, line.cost_micros) == (
        True,
        39,
        sum(r["cost_micros"] for r in rows),
    )
    assert billing.invoice_csv(inv).splitlines()[1].startswith("batch,")
    for granularity in ("minute", "hour", "day"):  # the lines' usage reached the roll-ups
        [rolled] = db_rows(
            server,
            "SELECT SUM(requests) AS n, SUM(prompt_tokens) AS p, SUM(cost_micros) AS c "
            "FROM usage_rollups WHERE granularity = :g AND batch = 1",
            g=granularity,
        )
        assert (rolled["n"], rolled["p"], rolled["c"]) == (
            39,
            sum(r["prompt_tokens"] for r in rows),
            sum(r["cost_micros"] for r in rows),
        )


def test_a_foreign_or_unknown_file_is_a_404_and_an_endpoint_mismatch_a_400(
    server_factory: Any,
) -> None:
    server = server_factory()
    key = server.api_key
    other = server.new_key(name="other", workspace="other")
    file_id = put_file(server, workspace_of(server, key), jsonl([chat_line(1)]))
    r = create(server, other, file_id)
    assert (r.status_code, r.json()["error"]["param"]) == (404, "input_file_id")
    assert create(server, key, "file-nope").status_code == 404
    r = create(server, key, file_id, endpoint="/v1/embeddings")
    assert (r.status_code, r.json()["error"]["param"]) == (400, "endpoint")
    ok = create(server, key, file_id).json()
    r = httpx.get(
        f"{server.base_url}/v1/batches/{ok['id']}", headers={"Authorization": f"Bearer {other}"}
    )
    assert r.status_code == 404


def test_cancel_bills_the_finished_lines_and_writes_off_the_rest(server_factory: Any) -> None:
    server = server_factory(FakeEngine(MODEL, "a b c d e f g h", token_delay_s=0.05))
    key = server.api_key
    file_id = put_file(server, workspace_of(server, key), jsonl([chat_line(i) for i in range(30)]))
    b = create(server, key, file_id).json()
    wait_for(server, key, b["id"], {"in_progress"})
    time.sleep(1.0)
    r = httpx.post(
        f"{server.base_url}/v1/batches/{b['id']}/cancel",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.json()["status"] in ("cancelling", "cancelled")
    done = wait_for(server, key, b["id"], {"cancelled"})
    assert done["status"] == "cancelled"
    out = file_lines(server, done["output_file_id"])
    err = file_lines(server, done["error_file_id"])
    assert 0 < len(out) < 30
    assert len(out) + len(err) == 30
    assert {x["error"]["code"] for x in err} == {"batch_cancelled"}
    assert sorted(x["custom_id"] for x in out + err) == sorted(f"req-{i}" for i in range(30))
    billed = db_rows(server, "SELECT custom_id FROM usage_records WHERE batch_id = :b", b=b["id"])
    assert sorted(r["custom_id"] for r in billed) == sorted(x["custom_id"] for x in out)
    again = httpx.post(
        f"{server.base_url}/v1/batches/{b['id']}/cancel",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert again.status_code == 409


def test_an_expired_batch_ends_expired(server_factory: Any) -> None:
    server = server_factory(FakeEngine(MODEL, "a b c d", token_delay_s=0.05))
    key = server.api_key
    file_id = put_file(server, workspace_of(server, key), jsonl([chat_line(i) for i in range(20)]))
    b = create(server, key, file_id).json()
    wait_for(server, key, b["id"], {"in_progress"})
    past = datetime.now(UTC) - timedelta(seconds=1)
    db_execute(server, "UPDATE batches SET expires_at = :t WHERE id = :b", t=past, b=b["id"])
    server.state.batch_runner.active[b["id"]].expires_at = past
    done = wait_for(server, key, b["id"], {"expired"})
    assert done["status"] == "expired"
    err = file_lines(server, done["error_file_id"])
    assert err and {x["error"]["code"] for x in err} == {"batch_expired"}
    out = file_lines(server, done["output_file_id"])
    assert len(out) + len(err) == 20


def test_a_bad_file_is_refused_at_create_naming_the_line(server_factory: Any) -> None:
    server = server_factory()
    key = server.api_key
    lines = [chat_line(1), chat_line(1)]  # bytes that never passed an upload's checks
    file_id = put_file(server, workspace_of(server, key), jsonl(lines))
    r = create(server, key, file_id)
    assert (r.status_code, r.json()["error"]["param"]) == (400, "line 2: custom_id")
    assert db_rows(server, "SELECT id FROM batches") == []


def test_a_batch_whose_input_is_gone_fails(server_factory: Any) -> None:
    server = server_factory()
    key = server.api_key
    file_id = put_file(server, workspace_of(server, key), jsonl([chat_line(1)]))
    runner = server.state.batch_runner
    runner._stopped = True  # hold the runner while the file disappears
    b = create(server, key, file_id).json()
    [row] = db_rows(server, "SELECT path FROM files WHERE id = :f", f=file_id)
    (server.settings.files_dir / row["path"]).unlink()  # deleted, as the Files API does
    db_execute(server, "UPDATE files SET deleted_at = created_at WHERE id = :f", f=file_id)
    runner._next_poll = 0.0  # due now
    server.call(runner.tick())
    done = wait_for(server, key, b["id"], {"failed"})
    assert done["status"] == "failed"
    assert done["errors"]["data"][0]["code"] == "input_file_gone"


def test_online_traffic_preempts_batch_lines(server_factory: Any) -> None:
    server = server_factory(FakeEngine(MODEL, "x " * 20, token_delay_s=0.02))
    key = server.api_key
    file_id = put_file(server, workspace_of(server, key), jsonl([chat_line(i) for i in range(200)]))
    b = create(server, key, file_id).json()
    wait_for(server, key, b["id"], {"in_progress"})
    time.sleep(0.5)
    runner = server.state.batch_runner
    assert runner.running(MODEL) > 0
    body = {"model": MODEL, "messages": [{"role": "user", "content": "now"}], "stream": True}
    auth = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=server.base_url, headers=auth) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as r,
    ):
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        time.sleep(0.1)
        assert runner.running(MODEL) == 0  # preempted while the online request runs
        rest = list(lines)
    assert rest[-2:] == ["data: [DONE]", ""] or rest[-1] == "data: [DONE]"
    cancel = httpx.post(
        f"{server.base_url}/v1/batches/{b['id']}/cancel",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert cancel.status_code == 200
    done = wait_for(server, key, b["id"], {"cancelled"})
    out = file_lines(server, done["output_file_id"])
    err = file_lines(server, done["error_file_id"])
    assert len(out) + len(err) == 200
    ids = [x["custom_id"] for x in out + err]
    assert len(set(ids)) == 200  # a preempted line was answered once, not twice


@pytest.mark.parametrize("n", [2])
def test_two_workspaces_share_the_capacity(server_factory: Any, n: int) -> None:
    server = server_factory(
        FakeEngine(MODEL, "x y z", token_delay_s=0.01), batch={"concurrency": 2}
    )
    a_key = server.api_key
    b_key = server.new_key(name="b", workspace="other")
    big = put_file(server, workspace_of(server, a_key), jsonl([chat_line(i) for i in range(300)]))
    small = put_file(server, workspace_of(server, b_key), jsonl([chat_line(i) for i in range(10)]))
    first = create(server, a_key, big).json()
    wait_for(server, a_key, first["id"], {"in_progress"})
    second = create(server, b_key, small).json()
    done = wait_for(server, b_key, second["id"], {"completed"})
    assert done["status"] == "completed"
    big_now = wait_for(server, a_key, first["id"], {"completed"}, timeout_s=0)
    # the small batch finished while the big one was still far from done: it was not starved
    assert big_now["request_counts"]["completed"] < 300


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_gateways_on_one_database_run_each_batch_once(
    server_factory: Any, tmp_path: Path
) -> None:
    first = server_factory(FakeEngine(MODEL, "x y", token_delay_s=0.002))
    other_dir = tmp_path / "second-gateway"  # its own data (spool), the files shared
    settings = make_settings(
        other_dir, first.settings.database_url, batch={"files_dir": str(first.settings.files_dir)}
    )
    second = server_factory(
        FakeEngine(MODEL, "x y", token_delay_s=0.002), settings=settings, key=False
    )
    key = first.api_key
    file_id = put_file(first, workspace_of(first, key), jsonl([chat_line(i) for i in range(120)]))
    b = create(first, key, file_id).json()
    done = wait_for(second, key, b["id"], {"completed"})
    assert done["request_counts"] == {"total": 120, "completed": 120, "failed": 0}
    started = sorted(
        [first.state.batch_runner.lines_started, second.state.batch_runner.lines_started]
    )
    assert started == [0, 120]  # one gateway held the lease and ran every line, once
    rows = db_rows(first, "SELECT COUNT(*) AS n FROM usage_records WHERE batch_id = :b", b=b["id"])
    assert rows == [{"n": 120}]


def test_a_gateway_without_the_shared_files_dir_fails_the_batch_clearly(
    server_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two gateways on one database, each with its own files folder (as on two machines
    without a shared file system): the one that takes the batch cannot read its input, and
    fails it at once with ``input_file_unreadable``, logging the folder it looked in."""
    first = server_factory(FakeEngine(MODEL, "x y"))
    first.state.batch_runner._stopped = True  # the second gateway takes the lease
    settings = make_settings(tmp_path / "elsewhere", first.settings.database_url)
    second = server_factory(FakeEngine(MODEL, "x y"), settings=settings, key=False)
    assert second.settings.files_dir != first.settings.files_dir
    key = first.api_key
    file_id = put_file(first, workspace_of(first, key), jsonl([chat_line(i) for i in range(3)]))
    with caplog.at_level("ERROR", "modelgrid.batch"):
        b = create(first, key, file_id).json()
        second.state.batch_runner.wake()
        done = wait_for(first, key, b["id"], {"failed", "completed"})
    assert done["status"] == "failed"
    [error] = done["errors"]["data"]
    assert (error["code"], error["param"]) == ("input_file_unreadable", "input_file_id")
    assert file_id in error["message"] and str(tmp_path) not in error["message"]
    assert second.state.batch_runner.lines_started == 0
    [line] = [r.getMessage() for r in caplog.records if "files_dir" in r.getMessage()]
    assert str(second.settings.files_dir) in line and file_id in line


def test_a_fault_of_ours_becomes_an_error_line_not_a_loop(server_factory: Any) -> None:
    server = server_factory()
    key = server.api_key
    lines = server.state.batch_runner._lines
    calls = []

    async def broken(*args: Any) -> Any:
        calls.append(args[3])
        raise RuntimeError("a bug")

    lines.run = broken
    file_id = put_file(server, workspace_of(server, key), jsonl([chat_line(1)]))
    b = create(server, key, file_id).json()
    done = wait_for(server, key, b["id"], {"completed"})
    assert done["request_counts"] == {"total": 1, "completed": 0, "failed": 1}
    [err] = file_lines(server, done["error_file_id"])
    assert err["response"]["status_code"] == 500
    assert err["response"]["body"]["error"]["code"] == "internal_error"
    assert len(calls) == 3  # MAX_ATTEMPTS, then written off
