"""A vector store file's ``attributes`` come back as they were given, or are refused: a
number the store cannot keep exactly is a 400 naming it (10**30 was stored as null)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.databases import BOTH_DATABASES
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.support import ThreadServer

pytestmark = BOTH_DATABASES


@pytest.fixture
def server(server_factory: ServerFactory) -> ThreadServer:
    return server_factory(FakeEngine(), HashEmbeddingEngine(), knowledge={"poll_interval_s": 0.05})


def api(s: ThreadServer, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {s.api_key}"}
    return httpx.request(method, f"{s.base_url}{path}", headers=headers, timeout=30, **kw)


def test_attributes_round_trip_or_are_refused(server: ThreadServer) -> None:
    up = api(
        server,
        "POST",
        "/v1/files",
        files={"file": ("a.txt", b"Parcels arrive within three days.")},
        data={"purpose": "assistants"},
    )
    file_id = up.json()["id"]
    vs = api(server, "POST", "/v1/vector_stores", json={"name": "s"}).json()["id"]
    kept = {"big": 2**63 - 1, "small": -(2**63), "ratio": 0.25, "on": True, "team": "care"}
    r = api(
        server,
        "POST",
        f"/v1/vector_stores/{vs}/files",
        json={"file_id": file_id, "attributes": kept},
    )
    assert r.status_code == 200, r.text
    assert r.json()["attributes"] == kept
    got = api(server, "GET", f"/v1/vector_stores/{vs}/files/{file_id}").json()
    assert got["attributes"] == kept
    for value in (10**30, 2**63, -(2**63) - 1):
        for method, path, body in [
            ("POST", f"/v1/vector_stores/{vs}/files/{file_id}", {"attributes": {"n": value}}),
            (
                "POST",
                f"/v1/vector_stores/{vs}/file_batches",
                {"file_ids": [file_id], "attributes": {"n": value}},
            ),
        ]:
            r = api(server, method, path, json=body)
            assert (r.status_code, r.json()["error"]["param"]) == (400, "attributes.n"), r.text
    got = api(server, "GET", f"/v1/vector_stores/{vs}/files/{file_id}").json()
    assert got["attributes"] == kept  # nothing changed
