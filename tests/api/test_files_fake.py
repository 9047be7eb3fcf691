"""``/v1/files`` through the official ``openai`` SDK against a real server: uploads stored
byte for byte, bad files refused naming the line and field with nothing left behind, files
owned by their workspace, expiring, within a quota and the key's regions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ServerFactory
from tests.support import ThreadServer, create_key, db_execute, db_rows

MODEL = "fake-model"


def line(custom_id: str, **extra: Any) -> dict[str, Any]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def jsonl(*objs: Any) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def client(server: ThreadServer, key: str | None = None, prefix: str = "") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.base_url}{prefix}/v1", api_key=key or server.api_key, max_retries=0
    )


def upload(c: openai.OpenAI, path: Path, data: bytes, **kw: Any) -> Any:
    path.write_bytes(data)
    with path.open("rb") as f:
        return c.files.create(file=f, purpose="batch", **kw)


def stored(server: ThreadServer) -> list[Path]:
    root = server.settings.files_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("prefix", ["", "/compatible-mode"])
def test_upload_list_retrieve_content_delete(
    server_factory: ServerFactory, tmp_path: Path, prefix: str
) -> None:
    # the upload route takes a whole input file, whatever the other routes' body limit
    server = server_factory(server={"max_body_bytes": 10_000})
    c = client(server, prefix=prefix)
    data = jsonl(*(line(f"req-{i}") for i in range(150)))
    assert len(data) > 10_000
    f = upload(c, tmp_path / "tickets.jsonl", data)
    assert (f.object, f.bytes, f.filename, f.purpose, f.status) == (
        "file",
        len(data),
        "tickets.jsonl",
        "batch",
        "processed",
    )
    assert f.id.startswith("file-") and f.expires_at == f.created_at + 30 * 86400
    assert [x.id for x in c.files.list()] == [f.id]
    assert [x.id for x in c.files.list(purpose="batch_output")] == []
    assert c.files.retrieve(f.id) == f
    assert c.files.content(f.id).read() == data
    short = upload(
        c,
        tmp_path / "short.jsonl",
        jsonl(line("a")),
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert short.expires_at == short.created_at + 3600
    page = c.files.list(limit=1, order="asc")
    assert [x.id for x in page.data] == [f.id] and page.has_more
    gone = c.files.delete(f.id)
    assert (gone.id, gone.deleted) == (f.id, True)
    with pytest.raises(openai.NotFoundError) as exc:
        c.files.retrieve(f.id)
    assert (exc.value.code, exc.value.param) == ("file_not_found", "file_id")
    with pytest.raises(openai.NotFoundError):
        c.files.content(f.id)
    assert [p.name for p in stored(server)] == [f"{short.id}.jsonl"]
    c.close()


def test_bad_uploads_are_refused_naming_line_and_field_and_store_nothing(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(
        batch={"max_line_bytes": 2_000, "max_lines": 5, "max_file_bytes": 20_000}
    )
    c = client(server)
    wrong_url = {**line("b"), "url": "/v1/images/generations"}
    other_model = {**line("b"), "body": {"model": "gpt-9", "messages": []}}
    cases: list[tuple[bytes, str, str | None, str]] = [
        (
            jsonl(line("a")) + b'{"custom_id": "b", \n',
            "invalid_json_line",
            "line 2",
            "Line 2 is not valid JSON",
        ),
        (
            jsonl(line("a"), line("b"), line("a")),
            "duplicate_custom_id",
            "line 3: custom_id",
            "Line 3: 'custom_id' 'a' is used by line 1 too.",
        ),
        (jsonl(line("a"), wrong_url), "invalid_url", "line 2: url", "Line 2: 'url'"),
        (
            jsonl(line("a"), {**line("b"), "body": {"model": "m2"}}),
            "mismatched_model",
            "line 2: body.model",
            "Line 2: 'body.model' 'm2' differs from line 1's 'fake-model'",
        ),
        (jsonl(other_model), "model_not_found", "line 1: body.model", "Line 1: 'body.model'"),
        (
            jsonl(line("a"), {**line("b"), "pad": "x" * 3_000}),
            "line_too_large",
            "line 2",
            "Line 2 is longer than 2000 bytes.",
        ),
        (
            jsonl(*(line(str(i)) for i in range(6))),
            "too_many_tasks",
            "line 6",
            "Line 6: the file has more than 5 request lines.",
        ),
        (
            jsonl(*({**line(str(i)), "pad": "x" * 1_900} for i in range(11))),
            "file_too_large",
            "file",
            "The file is larger than 20000 bytes.",
        ),
    ]
    for data, code, param, message in cases:
        with pytest.raises(openai.BadRequestError) as exc:
            upload(c, tmp_path / "bad.jsonl", data)
        e = exc.value
        assert (e.status_code, e.code, e.param) == (400, code, param), e.message
        assert e.body["message"].startswith(message)  # type: ignore[index]
        assert e.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as exc:
        (tmp_path / "x.jsonl").write_bytes(jsonl(line("a")))
        with (tmp_path / "x.jsonl").open("rb") as f:
            c.files.create(file=f, purpose="fine-tune")
    assert (exc.value.code, exc.value.param) == ("invalid_value", "purpose")
    headers = {"Authorization": f"Bearer {server.api_key}"}
    r = httpx.post(f"{server.base_url}/v1/files", data={"purpose": "batch"}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    big = b"x" * (20_000 + 2 * 1024 * 1024)  # far past the file limit: cut by the edge
    r = httpx.post(
        f"{server.base_url}/v1/files",
        files={"file": ("big.jsonl", big)},
        data={"purpose": "batch"},
        headers=headers,
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert list(c.files.list()) == []
    assert stored(server) == []
    assert db_rows(server, "SELECT id FROM files") == []
    c.close()


def test_foreign_expired_quota_and_region(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory(batch={"storage_quota_bytes": 1_000})
    url = server.settings.database_url
    c = client(server)
    data = jsonl(line("a"), line("b"))  # ~250 bytes
    mine = upload(c, tmp_path / "a.jsonl", data)

    other = client(server, create_key(url, workspace="other").plaintext)
    for ident in (mine.id, "file-unknown"):
        for call in (other.files.retrieve, other.files.content, other.files.delete):
            with pytest.raises(openai.NotFoundError) as exc:
                call(ident)
            assert exc.value.body["message"] == f"No such file: '{ident}'."  # type: ignore[index]
    assert list(other.files.list()) == []

    db_execute(
        server,
        "UPDATE files SET expires_at = :at WHERE id = :id",
        at="2000-01-01 00:00:00.000000",
        id=mine.id,
    )
    with pytest.raises(openai.NotFoundError) as exc:
        c.files.retrieve(mine.id)
    assert exc.value.body["message"] == f"No such file: '{mine.id}'."  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        c.files.content(mine.id)
    assert list(c.files.list()) == []

    kept = [upload(c, tmp_path / f"{i}.jsonl", data) for i in range(3)]
    with pytest.raises(openai.RateLimitError) as quota:
        upload(c, tmp_path / "over.jsonl", data)
    assert (quota.value.code, quota.value.body["type"]) == (  # type: ignore[index]
        "insufficient_quota",
        "insufficient_quota",
    )
    assert quota.value.response.headers["x-should-retry"] == "false"
    assert {x.id for x in c.files.list()} == {k.id for k in kept}

    fenced_key = create_key(url, workspace="fenced").plaintext
    value = ":regions" if url.startswith("sqlite") else "CAST(:regions AS JSON)"
    db_execute(
        server,
        f"UPDATE workspaces SET allowed_regions = {value} WHERE name = 'fenced'",
        regions='["elsewhere"]',
    )
    fenced = client(server, fenced_key)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        upload(fenced, tmp_path / "f.jsonl", data)
    assert denied.value.code == "region_not_allowed"
    rows = db_rows(server, "SELECT f.id FROM files f JOIN workspaces w ON w.id = f.workspace_id")
    assert len(rows) == 4  # mine (expired) and the three kept
    for each in (c, other, fenced):
        each.close()
