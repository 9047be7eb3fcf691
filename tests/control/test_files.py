"""Files (``control.files``): uploads checked line by line as they stream, stored whole or not
at all, owned by their workspace, within its quota and its allowed regions, and expiring."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelgrid.config import BatchSettings
from modelgrid.control import ControlPlane, FileTopology
from modelgrid.control.files import Files
from modelgrid.core.errors import (
    BatchInputError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
)
from modelgrid.protocol.admin import WorkspaceCreate
from modelgrid.protocol.openai.batch_input import LineSplitter, validate_batch_line
from modelgrid.routing.topology import Region, Topology, with_local_models
from modelgrid.storage.filestore import FileStore
from modelgrid.tenancy.service import Principal
from tests.databases import with_sessions
from tests.support import SEALER, db_rows

MODEL = "m1"
OTHER = "m2"
CHAT = "/v1/chat/completions"


def line(custom_id: str, model: str = MODEL, url: str = CHAT, **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body, **extra}


def jsonl(*objs: Any) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class World:
    """A control plane over Singapore (the gateway, jurisdiction SG, serving m1 and m2) and
    Ireland; two workspaces; the Files service with a test clock and small limits."""

    def __init__(self, sessions: Any, root: Path, limits: BatchSettings) -> None:
        t = Topology(
            regions=(
                Region("ap-southeast-1", "Singapore", "SG"),
                Region("eu-west-1", "Ireland", "IE"),
            ),
            gateway_region="ap-southeast-1",
        )
        topology = with_local_models(t, [MODEL, OTHER])
        self.plane = ControlPlane(
            sessions,
            FileTopology(root / "topology.toml", topology, [MODEL, OTHER]),
            files=FileStore(root / "files"),
            batch=limits,
            sealer=SEALER,
        )
        self.clock = Clock()
        self.store = FileStore(root / "files")
        self.files = Files(sessions, self.plane.inventory, self.store, limits, clock=self.clock)
        self.root = root / "files"

    async def principal(self, name: str, **scope: Any) -> Principal:
        ws = await self.plane.workspaces.create(WorkspaceCreate(name=name), actor="t")
        return Principal(key_id=f"k_{name}", workspace_id=ws.id, role="tenant", name=name, **scope)

    def stored(self) -> list[Path]:
        """Every file under the store's root, temporary ones included."""
        return sorted(p for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else []


def run(database_url: str, tmp_path: Path, fn: Any, limits: BatchSettings | None = None) -> Any:
    async def go(sessions: Any) -> Any:
        return await fn(World(sessions, tmp_path, limits or BatchSettings()))

    return with_sessions(database_url, go)


def test_upload_list_get_content_delete(tmp_path: Path, database_url: str) -> None:
    data = jsonl(line("a"), line("b")) + b"\n" + jsonl(line("c"))  # a blank line: ignored

    async def go(w: World) -> None:
        p = await w.principal("acme")
        obj = await w.files.create(p, filename="in.jsonl", purpose="batch", chunks=[data])
        assert obj.id.startswith("file-") and obj.object == "file"
        assert (obj.bytes, obj.filename, obj.purpose, obj.status) == (
            len(data),
            "in.jsonl",
            "batch",
            "processed",
        )
        assert obj.created_at == int(w.clock.now.timestamp())
        assert obj.expires_at == obj.created_at + BatchSettings().file_ttl_s
        assert await w.files.get(p.workspace_id, obj.id) == obj
        page = await w.files.list(p.workspace_id)
        assert [f.id for f in page.data] == [obj.id] and not page.has_more
        assert b"".join(await w.files.content(p.workspace_id, obj.id)) == data
        row = await w.files.row(p.workspace_id, obj.id)
        assert (row.lines, row.model, row.region) == (3, MODEL, "ap-southeast-1")
        assert [(x.line, x.custom_id) for x in w.files.read_lines(row)] == [
            (1, "a"),
            (2, "b"),
            (4, "c"),
        ]
        summary = await w.files.check_input(p, row)
        assert (summary.url, summary.model, summary.lines) == (CHAT, MODEL, 3)
        gone = await w.files.delete(p.workspace_id, obj.id, actor="mg-k_acme")
        assert gone.model_dump() == {"id": obj.id, "object": "file", "deleted": True}
        assert w.stored() == []
        for call in (w.files.get, w.files.content):
            with pytest.raises(NotFoundError) as exc:
                await call(p.workspace_id, obj.id)
            assert exc.value.message == f"No such file: '{obj.id}'."
        with pytest.raises(NotFoundError):
            await w.files.delete(p.workspace_id, obj.id, actor="mg-k_acme")
        assert (await w.files.list(p.workspace_id)).data == []

    run(database_url, tmp_path, go)
    actions = [r["action"] for r in db_rows(database_url, "SELECT action FROM audit_log")]
    assert actions.count("file.create") == 1 and actions.count("file.delete") == 1


def _bad(n: int = 0, **kw: Any) -> dict[str, Any]:
    obj = line(f"id{n}")
    obj.update(kw)
    return obj


BAD: list[tuple[str, bytes, str, str | None, str]] = [
    # (case, file, code, param, message)
    (
        "not_json",
        jsonl(line("a")) + b'{"custom_id": "b",\n',
        "invalid_json_line",
        "line 2",
        "Line 2 is not valid JSON",
    ),
    ("not_utf8", b"\xff\xfe{}\n", "invalid_json_line", "line 1", "Line 1 is not valid JSON"),
    ("not_object", b"[1, 2]\n", "invalid_json_line", "line 1", "Line 1 must be a JSON object."),
    (
        "no_custom_id",
        jsonl({k: v for k, v in line("a").items() if k != "custom_id"}),
        "missing_required_parameter",
        "line 1: custom_id",
        "Line 1: 'custom_id' is missing.",
    ),
    (
        "custom_id_too_long",
        jsonl(line("x" * 513)),
        "invalid_value",
        "line 1: custom_id",
        "Line 1: 'custom_id' must be a string of 1 to 512 characters.",
    ),
    (
        "custom_id_not_str",
        jsonl(_bad(custom_id=7)),
        "invalid_value",
        "line 1: custom_id",
        "Line 1: 'custom_id' must be a string",
    ),
    (
        "get",
        jsonl(_bad(method="GET")),
        "invalid_value",
        "line 1: method",
        "Line 1: 'method' must be 'POST', not 'GET'.",
    ),
    (
        "wrong_url",
        jsonl(line("a"), line("b", url="/v1/images/generations")),
        "invalid_url",
        "line 2: url",
        "Line 2: 'url' '/v1/images/generations' is not supported; use one of "
        "/v1/chat/completions, /v1/completions, /v1/embeddings.",
    ),
    (
        "body_not_object",
        jsonl(_bad(body=[])),
        "invalid_value",
        "line 1: body",
        "Line 1: 'body' must be a JSON object.",
    ),
    (
        "no_model",
        jsonl(_bad(body={"messages": []})),
        "missing_required_parameter",
        "line 1: body.model",
        "Line 1: 'body.model' must be a non-empty string.",
    ),
    (
        "duplicate_custom_id",
        jsonl(line("a"), line("b"), line("a")),
        "duplicate_custom_id",
        "line 3: custom_id",
        "Line 3: 'custom_id' 'a' is used by line 1 too.",
    ),
    (
        "two_urls",
        jsonl(line("a"), line("b", url="/v1/completions")),
        "mismatched_url",
        "line 2: url",
        "Line 2: 'url' '/v1/completions' differs from line 1's '/v1/chat/completions': "
        "one url per file.",
    ),
    (
        "two_models",
        jsonl(line("a"), line("b", model=OTHER)),
        "mismatched_model",
        "line 2: body.model",
        "Line 2: 'body.model' 'm2' differs from line 1's 'm1': one model per file.",
    ),
    (
        "unknown_model",
        b"\n" + jsonl(line("a", model="gpt-9")),
        "model_not_found",
        "line 2: body.model",
        "Line 2: 'body.model' 'gpt-9' is not served here.",
    ),
    (
        "line_too_long",
        jsonl(line("a"), line("b", pad="x" * 900)),
        "line_too_large",
        "line 2",
        "Line 2 is longer than 800 bytes.",
    ),
    (
        "too_many_lines",
        jsonl(*(line(str(i)) for i in range(5))),
        "too_many_tasks",
        "line 5",
        "Line 5: the file has more than 4 request lines.",
    ),
    (
        "file_too_large",
        jsonl(line("a", pad="x" * 400), line("b", pad="x" * 400), line("c", pad="x" * 400)),
        "file_too_large",
        "file",
        "The file is larger than 1500 bytes.",
    ),
    ("empty", b"\n \n\r\n", "empty_file", "file", "The file holds no request lines."),
]


@pytest.mark.parametrize(("case", "data", "code", "param", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_file_is_refused_naming_line_and_field_and_nothing_is_stored(
    tmp_path: Path,
    database_url: str,
    case: str,
    data: bytes,
    code: str,
    param: str | None,
    message: str,
) -> None:
    limits = BatchSettings(max_line_bytes=800, max_lines=4, max_file_bytes=1500)

    async def go(w: World) -> BatchInputError:
        p = await w.principal("acme")
        with pytest.raises(BatchInputError) as exc:
            # in small chunks: the checks hold across chunk boundaries
            chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
            await w.files.create(p, filename="in.jsonl", purpose="batch", chunks=chunks)
        assert w.stored() == []
        assert (await w.files.list(p.workspace_id)).data == []
        return exc.value

    err = run(database_url, tmp_path, go, limits)
    assert (err.status, err.code, err.param) == (400, code, param)
    assert err.message.startswith(message), err.message
    assert db_rows(database_url, "SELECT id FROM files") == []


def test_a_model_the_key_may_not_use_is_refused(tmp_path: Path, database_url: str) -> None:
    async def go(w: World) -> BatchInputError:
        p = await w.principal("acme", allowed_models=frozenset({OTHER}))
        with pytest.raises(BatchInputError) as exc:
            await w.files.create(p, filename="f", purpose="batch", chunks=[jsonl(line("a"))])
        return exc.value

    err = run(database_url, tmp_path, go)
    assert (err.code, err.param, err.line, err.field) == (
        "model_not_allowed",
        "line 1: body.model",
        1,
        "body.model",
    )


def test_blank_lines_crlf_and_a_missing_final_newline_are_fine(
    tmp_path: Path, database_url: str
) -> None:
    data = (
        b"\r\n"
        + json.dumps(line("a")).encode()
        + b"\r\n  \n"
        + json.dumps(line("b")).encode()  # no final newline
    )

    async def go(w: World) -> tuple[int, list[int]]:
        p = await w.principal("acme")

        async def trickle() -> AsyncIterator[bytes]:  # async chunks, one byte each
            for i in range(len(data)):
                yield data[i : i + 1]

        obj = await w.files.create(p, filename="f", purpose="batch", chunks=trickle())
        row = await w.files.row(p.workspace_id, obj.id)
        assert b"".join(await w.files.content(p.workspace_id, obj.id)) == data
        return row.lines, [x.line for x in w.files.read_lines(row)]

    assert run(database_url, tmp_path, go) == (2, [2, 4])


def test_other_purposes_and_lifetimes_are_refused(tmp_path: Path, database_url: str) -> None:
    async def go(w: World) -> list[tuple[str | None, str | None]]:
        p = await w.principal("acme")
        out = []
        for purpose, ttl in [("fine-tune", None), ("batch_output", None), ("batch", 60)]:
            with pytest.raises(InvalidRequestError) as exc:
                await w.files.create(
                    p, filename="f", purpose=purpose, chunks=[jsonl(line("a"))], expires_after_s=ttl
                )
            out.append((exc.value.param, exc.value.code))
        assert w.stored() == []
        return out

    assert run(database_url, tmp_path, go) == [
        ("purpose", "invalid_value"),
        ("purpose", "invalid_value"),
        ("expires_after[seconds]", "invalid_value"),
    ]


def test_another_workspaces_file_is_not_found(tmp_path: Path, database_url: str) -> None:
    async def go(w: World) -> None:
        a = await w.principal("a")
        b = await w.principal("b")
        obj = await w.files.create(a, filename="f", purpose="batch", chunks=[jsonl(line("x"))])
        unknown = "file-000000000000000000000000"
        for ident in (obj.id, unknown):
            with pytest.raises(NotFoundError) as exc:
                await w.files.get(b.workspace_id, ident)
            assert (exc.value.message, exc.value.code) == (
                f"No such file: '{ident}'.",
                "file_not_found",
            )
            with pytest.raises(NotFoundError):
                await w.files.content(b.workspace_id, ident)
            with pytest.raises(NotFoundError):
                await w.files.delete(b.workspace_id, ident, actor="t")
            with pytest.raises(NotFoundError):
                await w.files.list(b.workspace_id, after=ident)
        assert (await w.files.list(b.workspace_id)).data == []
        assert await w.files.get(a.workspace_id, obj.id) == obj  # untouched

    run(database_url, tmp_path, go)


def test_storage_quota(tmp_path: Path, database_url: str) -> None:
    one = jsonl(line("a", pad="x" * 300))  # ~400 bytes

    async def go(w: World) -> None:
        p = await w.principal("acme")
        other = await w.principal("other")
        first = await w.files.create(p, filename="1", purpose="batch", chunks=[one])
        with pytest.raises(QuotaExceededError) as exc:
            await w.files.create(p, filename="2", purpose="batch", chunks=[one])
        e = exc.value
        assert (e.status, e.code, e.type, e.param) == (
            429,
            "insufficient_quota",
            "insufficient_quota",
            "file",
        )
        assert e.headers == {"x-should-retry": "false"}
        assert [f.id for f in (await w.files.list(p.workspace_id)).data] == [first.id]
        assert len(w.stored()) == 1
        await w.files.create(other, filename="2", purpose="batch", chunks=[one])  # its own quota
        await w.files.delete(p.workspace_id, first.id, actor="t")
        await w.files.create(p, filename="2", purpose="batch", chunks=[one])
        # outputs are always kept, and count against later uploads
        await w.files.write_output(
            p.workspace_id, "ap-southeast-1", "batch_output", "o", [one], 3600
        )
        with pytest.raises(QuotaExceededError):
            await w.files.create(p, filename="3", purpose="batch", chunks=[b"{}"])

    run(database_url, tmp_path, go, BatchSettings(storage_quota_bytes=800))


@pytest.mark.parametrize(
    "scope",
    [
        {"allowed_regions": frozenset({"eu-west-1"})},
        {"allowed_jurisdictions": frozenset({"IE"})},
        {"allowed_regions": frozenset()},
    ],
    ids=["region", "jurisdiction", "none"],
)
def test_a_key_that_may_not_use_the_gateways_region_stores_nothing(
    tmp_path: Path, database_url: str, scope: dict[str, Any]
) -> None:
    async def go(w: World) -> PermissionDeniedError:
        p = await w.principal("acme", **scope)
        with pytest.raises(PermissionDeniedError) as exc:
            await w.files.create(p, filename="f", purpose="batch", chunks=[jsonl(line("a"))])
        assert w.stored() == []
        ok = replace(p, allowed_regions=frozenset({"ap-southeast-1"}), allowed_jurisdictions=None)
        await w.files.create(ok, filename="f", purpose="batch", chunks=[jsonl(line("a"))])
        return exc.value

    err = run(database_url, tmp_path, go)
    assert (err.status, err.code) == (403, "region_not_allowed")
    assert "ap-southeast-1" in err.message


def test_expiry_hides_at_once_and_purge_removes_the_bytes(
    tmp_path: Path, database_url: str
) -> None:
    async def go(w: World) -> tuple[str, str]:
        p = await w.principal("acme")
        short = await w.files.create(
            p, filename="s", purpose="batch", chunks=[jsonl(line("a"))], expires_after_s=3600
        )
        long = await w.files.create(p, filename="l", purpose="batch", chunks=[jsonl(line("a"))])
        assert short.expires_at == short.created_at + 3600
        assert await w.files.purge_expired() == 0
        w.clock.now += timedelta(seconds=3600)
        with pytest.raises(NotFoundError) as exc:
            await w.files.get(p.workspace_id, short.id)
        assert exc.value.message == f"No such file: '{short.id}'."
        with pytest.raises(NotFoundError):
            await w.files.content(p.workspace_id, short.id)
        assert [f.id for f in (await w.files.list(p.workspace_id)).data] == [long.id]
        assert len(w.stored()) == 2  # invisible, not yet purged
        assert await w.files.purge_expired() == 1
        assert await w.files.purge_expired() == 0
        assert [f.name for f in w.stored()] == [f"{long.id}.jsonl"]
        return short.id, long.id

    short, long = run(database_url, tmp_path, go)
    rows = db_rows(database_url, "SELECT id, deleted_at FROM files")
    assert {r["id"]: r["deleted_at"] is not None for r in rows} == {short: True, long: False}


def test_sweep_removes_what_a_killed_process_left(tmp_path: Path, database_url: str) -> None:
    async def go(w: World) -> None:
        p = await w.principal("acme")
        kept = await w.files.create(p, filename="k", purpose="batch", chunks=[jsonl(line("a"))])
        gone = await w.files.create(p, filename="g", purpose="batch", chunks=[jsonl(line("a"))])
        folder = w.root / "ap-southeast-1" / p.workspace_id
        left = [folder / ".file-x.jsonl.part", folder / "file-norow.jsonl"]
        for f in left:
            f.write_bytes(b"{}\n")
        await w.files.delete(p.workspace_id, gone.id, actor="t")
        (folder / f"{gone.id}.jsonl").write_bytes(b"{}\n")  # its bytes outlived its row
        fresh = folder / "file-fresh.jsonl"  # an upload between its rename and its row
        fresh.write_bytes(b"{}\n")
        hour_ago = time.time() - 3601
        for f in folder.iterdir():
            if f != fresh:
                os.utime(f, (hour_ago, hour_ago))
        assert await w.files.sweep_orphans() == 3
        assert sorted(f.name for f in w.stored()) == sorted([f"{kept.id}.jsonl", fresh.name])

    run(database_url, tmp_path, go)


def test_list_pages_by_cursor_in_either_order(tmp_path: Path, database_url: str) -> None:
    async def go(w: World) -> None:
        p = await w.principal("acme")
        ids = []
        for i in range(5):
            w.clock.now += timedelta(seconds=1)
            obj = await w.files.create(
                p, filename=str(i), purpose="batch", chunks=[jsonl(line("a"))]
            )
            ids.append(obj.id)
        w.clock.now += timedelta(seconds=1)
        out = await w.files.write_output(
            p.workspace_id, "ap-southeast-1", "batch_output", "out.jsonl", [b"{}\n"], 3600
        )
        batch_only = await w.files.list(p.workspace_id, purpose="batch")
        assert [f.id for f in batch_only.data] == ids[::-1]
        for order, expected in (("desc", [out.id, *ids[::-1]]), ("asc", [*ids, out.id])):
            seen: list[str] = []
            after = None
            while True:
                page = await w.files.list(p.workspace_id, limit=2, order=order, after=after)
                seen += [f.id for f in page.data]
                assert page.first_id == page.data[0].id and page.last_id == page.data[-1].id
                if not page.has_more:
                    break
                after = page.last_id
            assert seen == expected, order
        with pytest.raises(InvalidRequestError):
            await w.files.list(p.workspace_id, limit=0)

    run(database_url, tmp_path, go)


def test_files_created_in_the_same_instant_page_by_id(tmp_path: Path, database_url: str) -> None:
    async def go(w: World) -> None:
        p = await w.principal("acme")
        ids = [
            (await w.files.create(p, filename="f", purpose="batch", chunks=[jsonl(line("a"))])).id
            for _ in range(4)
        ]
        for order, expected in (("asc", sorted(ids)), ("desc", sorted(ids, reverse=True))):
            seen: list[str] = []
            after = None
            for _ in range(4):
                page = await w.files.list(p.workspace_id, limit=1, order=order, after=after)
                seen += [f.id for f in page.data]
                after = page.last_id
            assert seen == expected
            assert not page.has_more

    run(database_url, tmp_path, go)


def test_write_output_takes_async_chunks(tmp_path: Path, database_url: str) -> None:
    async def go(w: World) -> None:
        p = await w.principal("acme")

        async def results() -> AsyncIterator[bytes]:
            for i in range(3):
                await asyncio.sleep(0)
                yield b'{"custom_id": "%d"}\n' % i

        row = await w.files.write_output(
            p.workspace_id,
            "ap-southeast-1",
            "batch_output",
            "batch_x_output.jsonl",
            results(),
            7200,
        )
        obj = await w.files.get(p.workspace_id, row.id)
        assert (obj.purpose, obj.bytes, obj.expires_at) == (
            "batch_output",
            len(b"".join([b'{"custom_id": "%d"}\n' % i for i in range(3)])),
            obj.created_at + 7200,
        )
        got = b"".join(await w.files.content(p.workspace_id, row.id))
        assert got.count(b"\n") == 3
        with pytest.raises(InvalidRequestError) as exc:
            await w.files.input_file(p.workspace_id, row.id)
        assert exc.value.param == "input_file_id"
        with pytest.raises(NotFoundError) as nf:
            await w.files.input_file(p.workspace_id, "file-nope")
        assert nf.value.param == "input_file_id"

    run(database_url, tmp_path, go)


def test_a_long_line_is_refused_before_it_is_all_read() -> None:
    splitter = LineSplitter(max_line_bytes=1000)

    def endless() -> Iterator[bytes]:
        yield b'{"custom_id": "a"}\n'
        while True:
            yield b"x" * 300

    with pytest.raises(BatchInputError) as exc:
        for chunk in endless():
            splitter.feed(chunk)
    assert (exc.value.code, exc.value.line) == ("line_too_large", 2)


def test_validate_batch_line_returns_what_the_runner_needs() -> None:
    got = validate_batch_line(line("a", url="/v1/embeddings", model="e"), 7)
    assert (got.line, got.custom_id, got.url, got.model) == (7, "a", "/v1/embeddings", "e")
    with pytest.raises(BatchInputError) as exc:
        validate_batch_line({"custom_id": "", "method": "POST", "url": CHAT, "body": {}}, 3)
    assert (exc.value.param, exc.value.line, exc.value.field) == (
        "line 3: custom_id",
        3,
        "custom_id",
    )
