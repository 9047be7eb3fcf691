"""Names and descriptions refuse control characters (``protocol.text``): a 400 naming the
field on every object users name, over a real uvicorn server; a description keeps its tabs
and line breaks."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.support import ThreadServer, create_key

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# C0 (NUL, TAB, ESC), DEL and C1 (NEL, CSI)
BAD = ["x\u0000y", "x\ty", "x\u001b[2Jy", "x\u007fy", "x\u0085y", "x\u009by"]


@pytest.fixture
def server(server_factory: ServerFactory) -> ThreadServer:
    return server_factory(FakeEngine(), HashEmbeddingEngine(), knowledge={"poll_interval_s": 0.05})


def call(s: ThreadServer, method: str, path: str, key: str | None = None, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {key or s.api_key}"}
    return httpx.request(method, f"{s.base_url}{path}", headers=headers, timeout=30, **kw)


def made(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


@SQLITE
def test_names_and_descriptions_refuse_control_characters(server: ThreadServer) -> None:
    admin = create_key(server.settings.database_url, role="admin", workspace="admin").plaintext
    kb = made(call(server, "POST", "/v1/knowledge_bases", json={"name": "kb"}))
    vs = made(call(server, "POST", "/v1/vector_stores", json={"name": "vs"}))
    app = made(call(server, "POST", "/v1/apps", json={"name": "a", "model": "fake-model"}))
    ws = made(call(server, "POST", "/admin/v1/workspaces", admin, json={"name": "ws"}))
    key = made(call(server, "POST", f"/admin/v1/workspaces/{ws}/keys", admin, json={}))
    routes = [  # method, path, admin?, other fields of the body, the named fields
        ("POST", "/v1/knowledge_bases", False, {}, ["name", "description"]),
        ("POST", "/v1/vector_stores", False, {}, ["name", "description"]),
        ("POST", f"/v1/vector_stores/{vs}", False, {}, ["name"]),
        ("POST", "/v1/apps", False, {"model": "fake-model"}, ["name", "description"]),
        ("POST", f"/v1/apps/{app}", False, {}, ["name", "description"]),
        ("POST", "/admin/v1/workspaces", True, {}, ["name"]),
        ("POST", f"/admin/v1/workspaces/{ws}/keys", True, {}, ["name"]),
        ("PATCH", f"/admin/v1/keys/{key}", True, {}, ["name"]),
    ]
    for method, path, is_admin, rest, fields in routes:
        for field in fields:
            body = {"name": "ok", **rest}
            for bad in BAD:
                if field == "description" and bad == "x\ty":
                    continue  # prose may hold a tab
                r = call(
                    server, method, path, admin if is_admin else None, json={**body, field: bad}
                )
                assert r.status_code == 400, (path, field, bad, r.text)
                err = r.json()["error"]
                assert err["param"] == field, (path, field, bad, err)
                code_point = f"U+{ord(bad[1]):04X}"
                assert (
                    f"must not contain control characters ({code_point} at character 2)"
                    in (err["message"])
                ), (path, err)
    names = [x["name"] for x in call(server, "GET", "/v1/knowledge_bases").json()["data"]]
    assert names == ["kb", "vs"]  # nothing made (a vector store is a knowledge base too)
    assert [x["id"] for x in call(server, "GET", "/v1/vector_stores").json()["data"]] == [vs]
    prose = "Line one,\r\n\tline two.\n"
    r = call(server, "POST", "/v1/knowledge_bases", json={"name": "k2", "description": prose})
    assert (r.status_code, r.json()["description"]) == (200, prose)
    r = call(
        server, "POST", f"/v1/apps/{app}", json={"name": "Ünïcode ☃ name", "description": prose}
    )
    assert (r.status_code, r.json()["name"], r.json()["description"]) == (
        200,
        "Ünïcode ☃ name",
        prose,
    )
    assert call(server, "GET", f"/v1/knowledge_bases/{kb}").json()["name"] == "kb"
