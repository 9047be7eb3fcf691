"""Every list route's cursors (``api.paging``), over a real uvicorn server: an unknown
``after`` / ``before`` is a 404 naming the cursor, an empty one is the same as none, and a
list that pages forward only refuses ``before`` with a 400 naming it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.support import ThreadServer, create_key

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def server(server_factory: ServerFactory) -> ThreadServer:
    return server_factory(FakeEngine(), HashEmbeddingEngine(), knowledge={"poll_interval_s": 0.05})


def get(s: ThreadServer, path: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or s.api_key}"}
    return httpx.get(f"{s.base_url}{path}", headers=headers, timeout=30)


def post(s: ThreadServer, path: str, **kw: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {s.api_key}"}
    r = httpx.post(f"{s.base_url}{path}", headers=headers, timeout=30, **kw)
    assert r.status_code == 200, r.text
    return dict(r.json())


def error(r: httpx.Response) -> tuple[int, str | None, str]:
    err = r.json()["error"]
    return r.status_code, err["param"], err["message"]


@SQLITE
def test_every_list_names_its_cursor(server: ThreadServer) -> None:
    admin = create_key(server.settings.database_url, role="admin", workspace="admin").plaintext
    post(server, "/v1/apps", json={"name": "a", "model": "fake-model"})
    kb = post(server, "/v1/knowledge_bases", json={"name": "kb"})["id"]
    files = {"file": ("a.txt", b"Parcels arrive within three days.")}
    post(server, f"/v1/knowledge_bases/{kb}/documents", files=files)
    file_id = post(server, "/v1/files", files=files, data={"purpose": "assistants"})["id"]
    vs = post(server, "/v1/vector_stores", json={"name": "s"})["id"]
    batch = post(server, f"/v1/vector_stores/{vs}/file_batches", json={"file_ids": [file_id]})
    response = post(server, "/v1/responses", json={"model": "fake-model", "input": "hi"})["id"]

    forward_only = [
        ("/v1/apps", None),
        ("/admin/v1/workspaces/default/apps", admin),
        ("/v1/knowledge_bases", None),
        (f"/v1/knowledge_bases/{kb}/documents", None),
        ("/v1/files", None),
        ("/v1/batches", None),
        (f"/v1/responses/{response}/input_items", None),
        ("/admin/v1/usage", admin),
    ]
    both_ways = [
        "/v1/vector_stores",
        f"/v1/vector_stores/{vs}/files",
        f"/v1/vector_stores/{vs}/file_batches/{batch['id']}/files",
    ]
    codes: dict[str, str] = {}
    for path, key in [*forward_only, *((p, None) for p in both_ways)]:
        first = get(server, path, key)
        assert first.status_code == 200, (path, first.text)
        for empty in ("after=", "before=", "after=&before="):
            r = get(server, f"{path}?{empty}", key)
            assert (r.status_code, r.json()) == (200, first.json()), (path, empty, r.text)
        r = get(server, f"{path}?after=nope", key)
        status, param, message = error(r)
        assert (status, param) == (404, "after"), (path, message)
        assert "'nope'" in message, (path, message)
        codes[path] = r.json()["error"]["code"]
    assert codes == {  # an unknown cursor's code names the kind of item, as on every route
        "/v1/apps": "app_not_found",
        "/admin/v1/workspaces/default/apps": "app_not_found",
        "/v1/knowledge_bases": "knowledge_base_not_found",
        f"/v1/knowledge_bases/{kb}/documents": "document_not_found",
        "/v1/files": "file_not_found",
        "/v1/batches": "batch_not_found",
        f"/v1/responses/{response}/input_items": "input_item_not_found",
        "/admin/v1/usage": "usage_record_not_found",
        "/v1/vector_stores": "vector_store_not_found",
        f"/v1/vector_stores/{vs}/files": "file_not_found",
        f"/v1/vector_stores/{vs}/file_batches/{batch['id']}/files": "file_not_found",
    }
    most = {  # the documented bounds of limit: 1 to this (docs/*.md)
        "/v1/apps": 1000,
        "/admin/v1/workspaces/default/apps": 1000,
        "/v1/knowledge_bases": 1000,
        f"/v1/knowledge_bases/{kb}/documents": 1000,
        "/v1/files": 10_000,
        "/v1/batches": 100,
        f"/v1/responses/{response}/input_items": 100,
        "/admin/v1/usage": 1000,
        **dict.fromkeys(both_ways, 100),
    }
    for path, key in [*forward_only, *((p, None) for p in both_ways)]:
        join = "&" if "?" in path else "?"
        for limit in (1, most[path]):
            assert get(server, f"{path}{join}limit={limit}", key).status_code == 200, path
        for limit in (0, most[path] + 1):
            assert error(get(server, f"{path}{join}limit={limit}", key))[:2] == (400, "limit")
    for path, key in forward_only:
        assert error(get(server, f"{path}?before=x", key)) == (
            400,
            "before",
            "'before' is not supported on this list: page forward with 'after' (the previous "
            "page's last_id).",
        ), path
    for path in both_ways:
        assert error(get(server, f"{path}?before=nope"))[:2] == (404, "before"), path
