"""DashScope's native text-embedding API over a real server and the scripted embedding
engine, called with the official ``dashscope`` SDK (``TextEmbedding.call``) and raw HTTP.

The fake returns ``[((len(text) + j) % 5) / 4 for j in range(3)]`` and counts words as tokens.
"""

from __future__ import annotations

from http import HTTPStatus

import dashscope
import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.fake_embedding import FakeEmbeddingEngine
from tests.conftest import ServerFactory
from tests.support import ThreadServer, usage_rows

EMB = "fake-embedding"
PATH = "/api/v1/services/embeddings/text-embedding/text-embedding"


@pytest.fixture
def server(server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch) -> ThreadServer:
    s = server_factory(FakeEngine(), FakeEmbeddingEngine())
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{s.base_url}/api/v1")
    return s


def post(s: ThreadServer, body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {s.api_key}"}  # type: ignore[attr-defined]
    return httpx.post(f"{s.base_url}{PATH}", json=body, headers=headers)


def test_sdk_text_embedding_call(server: ThreadServer) -> None:
    r = dashscope.TextEmbedding.call(
        model=EMB,
        input=["hello world", "abcde"],
        api_key=server.api_key,
        text_type="query",  # type: ignore[attr-defined]
    )
    assert r.status_code == HTTPStatus.OK
    assert r.output["embeddings"] == [
        {"text_index": 0, "embedding": [0.25, 0.5, 0.75]},
        {"text_index": 1, "embedding": [0.0, 0.25, 0.5]},
    ]
    assert r.usage == {"total_tokens": 3}
    assert len(r.request_id) == 32
    [row] = usage_rows(server, expect=1)
    assert (row["endpoint"], row["model"], row["prompt_tokens"], row["status"]) == (
        "embeddings",
        EMB,
        3,
        200,
    )
    assert row["request_id"] == r.request_id


def test_exact_body_for_a_single_string(server: ThreadServer) -> None:
    r = post(server, {"model": EMB, "input": {"texts": "hello world"}})
    assert r.status_code == 200
    body = r.json()
    assert body == {
        "status_code": 200,
        "request_id": r.headers["x-request-id"],
        "code": "",
        "message": "",
        "output": {"embeddings": [{"text_index": 0, "embedding": [0.25, 0.5, 0.75]}]},
        "usage": {"total_tokens": 2},
    }


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": EMB, "input": {"texts": []}}, 400, "InvalidParameter"),
        ({"model": EMB, "input": {"texts": ["ok", ""]}}, 400, "InvalidParameter"),
        ({"model": EMB, "input": {}}, 400, "InvalidParameter"),
        (
            {"model": EMB, "input": {"texts": ["x"]}, "parameters": {"dimension": 1024}},
            400,
            "InvalidParameter",
        ),
        (
            {"model": EMB, "input": {"texts": ["x"]}, "parameters": {"output_type": "sparse"}},
            400,
            "InvalidParameter",
        ),
        ({"model": "text-embedding-v9", "input": {"texts": ["x"]}}, 404, "ModelNotFound"),
        ({"model": "fake-model", "input": {"texts": ["x"]}}, 400, "InvalidParameter"),
    ],
)
def test_errors_in_dashscope_shape(
    server: ThreadServer, body: object, status: int, code: str
) -> None:
    r = post(server, body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"request_id", "code", "message"}
    assert r.json()["code"] == code


def test_bad_key_is_invalid_api_key(server: ThreadServer) -> None:
    r = dashscope.TextEmbedding.call(model=EMB, input="hi", api_key="mg-wrong")
    assert r.status_code == HTTPStatus.UNAUTHORIZED
    assert r.code == "InvalidApiKey"
