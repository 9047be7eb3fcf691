"""Integer parameters that size work or reach the sampler are integers on the wire: the
string "5" or the float 1e30 is a 400 naming the field (pydantic's lax mode turned them into
5 and 10**30), in each protocol's error shape; a value past a C int is refused too."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.support import ThreadServer

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
BAD = ["5", 1e30, 5.0, 2**31, -1]


@pytest.fixture
def server(server_factory: ServerFactory) -> ThreadServer:
    return server_factory(FakeEngine(), HashEmbeddingEngine(), knowledge={"poll_interval_s": 0.05})


def post(s: ThreadServer, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {s.api_key}"}
    return httpx.post(f"{s.base_url}{path}", json=body, headers=headers, timeout=30)


@SQLITE
def test_integer_fields_refuse_strings_floats_and_huge_values(server: ThreadServer) -> None:
    kb = post(server, "/v1/knowledge_bases", {"name": "kb"}).json()["id"]
    vs = post(server, "/v1/vector_stores", {"name": "s"}).json()["id"]
    chat = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    dashscope = {"model": "fake-model", "input": {"prompt": "hi"}}
    openai_shape: list[tuple[str, dict[str, Any], str]] = [
        (f"/v1/vector_stores/{vs}/search", {"query": "x"}, "max_num_results"),
        (f"/v1/knowledge_bases/{kb}/search", {"query": "x"}, "top_k"),
        ("/v1/chat/completions", chat, "top_k"),
        ("/v1/completions", {"model": "fake-model", "prompt": "hi"}, "top_k"),
    ]
    for path, body, field in openai_shape:
        for bad in BAD:
            r = post(server, path, {**body, field: bad})
            assert (r.status_code, r.json()["error"]["param"]) == (400, field), (path, bad, r.text)
        assert post(server, path, {**body, field: 5}).status_code == 200, path
    anthropic = {**chat, "max_tokens": 5}
    for bad in BAD:
        r = post(server, "/v1/messages", {**anthropic, "top_k": bad})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert "top_k" in r.json()["error"]["message"], (bad, r.text)
    app = post(server, "/v1/apps", {"name": "a", "model": "fake-model"}).json()["id"]
    for path, body in [
        ("/api/v1/services/aigc/text-generation/generation", dashscope),
        (f"/api/v1/apps/{app}/completion", {"input": {"prompt": "hi"}}),
    ]:
        for bad in BAD:
            r = post(server, path, {**body, "parameters": {"top_k": bad}})
            assert (r.status_code, r.json()["code"]) == (400, "InvalidParameter"), (path, bad)
            assert "parameters.top_k" in r.json()["message"], (path, bad, r.text)
        assert post(server, path, {**body, "parameters": {"top_k": 5}}).status_code == 200, path
