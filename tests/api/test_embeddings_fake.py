"""OpenAI embeddings over a real uvicorn server with the scripted FakeEmbeddingEngine.

The fake returns ``[((len(text) + j) % 5) / 4 for j in range(3)]`` and counts words as tokens,
so the wire shapes (floats, base64 bytes, usage) can be asserted exactly.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import httpx
import openai
import pytest

from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.fake_embedding import FakeEmbeddingEngine
from tests.conftest import ServerFactory
from tests.support import ThreadServer, usage_rows

EMB = "fake-embedding"
HELLO = "hello world"  # 11 characters -> [0.25, 0.5, 0.75]; 2 "tokens"
HELLO_B64 = "AACAPgAAAD8AAEA/"  # little-endian float32 0.25, 0.5, 0.75


@pytest.fixture
def embedder() -> FakeEmbeddingEngine:
    return FakeEmbeddingEngine()


@pytest.fixture
def server(server_factory: ServerFactory, embedder: FakeEmbeddingEngine) -> ThreadServer:
    return server_factory(FakeEngine(), embedder)


def client(s: ThreadServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{s.base_url}/v1", api_key=s.api_key, max_retries=0)  # type: ignore[attr-defined]


def post(s: ThreadServer, body: object, path: str = "/v1/embeddings") -> httpx.Response:
    return httpx.post(
        f"{s.base_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {s.api_key}"},  # type: ignore[attr-defined]
    )


def test_string_input_float_exact_body(server: ThreadServer, tmp_path: Path) -> None:
    r = post(server, {"model": EMB, "input": HELLO})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.content == (
        b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.25,0.5,0.75]}],'
        b'"model":"fake-embedding","usage":{"prompt_tokens":2,"total_tokens":2}}'
    )
    [row] = usage_rows(tmp_path / "mg.db", expect=1)
    assert (row["endpoint"], row["model"], row["status"]) == ("embeddings", EMB, 200)
    assert (row["prompt_tokens"], row["completion_tokens"], row["finish_reason"]) == (2, 0, None)


def test_base64_is_little_endian_float32(server: ThreadServer) -> None:
    r = post(server, {"model": EMB, "input": [HELLO, "abcde"], "encoding_format": "base64"})
    assert r.status_code == 200
    data = r.json()["data"]
    assert [d["embedding"] for d in data] == [HELLO_B64, "AAAAAAAAgD4AAAA/"]
    assert struct.unpack("<3f", base64.b64decode(data[0]["embedding"])) == (0.25, 0.5, 0.75)


def test_list_input_is_one_batch_in_order(
    server: ThreadServer, embedder: FakeEmbeddingEngine
) -> None:
    texts = ["hi", HELLO, "abcde", "one two three"]
    r = client(server).embeddings.create(model=EMB, input=texts, encoding_format="float")
    assert [d.index for d in r.data] == [0, 1, 2, 3]
    assert [d.embedding for d in r.data] == [
        [0.5, 0.75, 1.0],
        [0.25, 0.5, 0.75],
        [0.0, 0.25, 0.5],
        [0.75, 1.0, 0.0],
    ]
    assert (r.usage.prompt_tokens, r.usage.total_tokens) == (1 + 2 + 1 + 3, 7)
    assert r.model == EMB and r.object == "list"
    assert embedder.batches == [4]  # every input in one engine call


def test_sdk_default_base64_decodes_to_the_float_result(server: ThreadServer) -> None:
    c = client(server)
    as_float = c.embeddings.create(model=EMB, input=[HELLO, "hi"], encoding_format="float")
    default = c.embeddings.create(model=EMB, input=[HELLO, "hi"])  # the SDK asks for base64
    assert [d.embedding for d in default.data] == [d.embedding for d in as_float.data]


def test_dimensions_equal_to_the_model_is_accepted(server: ThreadServer) -> None:
    r = post(server, {"model": EMB, "input": HELLO, "dimensions": 3, "user": "u"})
    assert r.status_code == 200 and r.json()["data"][0]["embedding"] == [0.25, 0.5, 0.75]


def test_compatible_mode_mount(server: ThreadServer) -> None:
    r = post(server, {"model": EMB, "input": HELLO}, path="/compatible-mode/v1/embeddings")
    assert r.status_code == 200 and r.json()["usage"]["total_tokens"] == 2


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"input": ""}, 400, "input", "invalid_request"),
        ({"input": []}, 400, "input", "invalid_request"),
        ({"input": ["a", ""]}, 400, "input[1]", "invalid_request"),
        ({"input": [1, -2, 3]}, 400, "input[0]", "invalid_request"),
        ({"input": [[1, 2], []]}, 400, "input[1]", "invalid_request"),
        ({"input": [[1, 2], "x"]}, 400, "input", "invalid_request"),
        ({"input": ["x"] * 2049}, 400, "input", "invalid_request"),
        ({"input": HELLO, "dimensions": 2}, 400, "dimensions", "unsupported_parameter"),
        ({"input": HELLO, "dimensions": 0}, 400, "dimensions", "invalid_request"),
        ({"input": HELLO, "encoding_format": "int8"}, 400, "encoding_format", "invalid_request"),
        ({"input": "w " * 17}, 400, "input", "context_length_exceeded"),
        ({"input": ["ok", "w " * 17]}, 400, "input[1]", "context_length_exceeded"),
        ({"model": "nope", "input": HELLO}, 404, "model", "model_not_found"),
        ({"model": "fake-model", "input": HELLO}, 400, "model", "model_not_supported"),
        ({"model": EMB}, 400, "input", "invalid_request"),
    ],
)
def test_bad_requests_get_openai_errors(
    server: ThreadServer,
    embedder: FakeEmbeddingEngine,
    tmp_path: Path,
    body: dict[str, object],
    status: int,
    param: str,
    code: str,
) -> None:
    r = post(server, {"model": EMB, **body})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["param"], err["code"]) == (param, code), err
    assert err["message"]
    assert embedder.batches == []  # refused before any vector was computed
    assert usage_rows(tmp_path / "mg.db", expect=1, timeout_s=0.3) == []


@pytest.mark.parametrize("value", [{"a": 1}, [1.5], [["a"]], True, None])
def test_an_input_of_no_accepted_shape_is_named_as_such(
    server: ThreadServer, value: object
) -> None:
    """Not "should be a valid string" (the union's first member) for ``[1.5]`` or an object:
    the four shapes the reference accepts."""
    r = post(server, {"model": EMB, "input": value})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert message.startswith(
        "Invalid value for 'input': must be a string, an array of strings, an array of token "
        "ids (integers) or an array of arrays of token ids"
    ), message
    assert r.json()["error"]["param"] == "input"


def test_chat_and_completions_refuse_the_embedding_model(server: ThreadServer) -> None:
    for path, body in (
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/completions", {"prompt": "hi"}),
    ):
        r = post(server, {"model": EMB, **body}, path=path)
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "model_not_supported"


@pytest.mark.parametrize("embedder", [FakeEmbeddingEngine(fail=True)])
def test_engine_failure_is_a_503_and_recorded(server: ThreadServer, tmp_path: Path) -> None:
    """The only replica failed and there is no other to fail over to (as for chat)."""
    r = post(server, {"model": EMB, "input": [HELLO, "hi"]})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "no_healthy_replica"
    assert r.headers["x-modelgrid-region"] == "local"
    [row] = usage_rows(tmp_path / "mg.db", expect=1)
    assert (row["status"], row["finish_reason"], row["prompt_tokens"]) == (503, "error", 3)
    assert row["region"] == "local"


def test_listed_in_models_and_readiness(server: ThreadServer) -> None:
    ids = [m.id for m in client(server).models.list()]
    assert ids == ["fake-model", EMB]
    ready = httpx.get(f"{server.base_url}/health/ready").json()
    assert ready["status"] == "ready" and ready["models"][EMB] is True


def test_token_id_inputs_are_decoded_with_the_models_tokenizer(server: ThreadServer) -> None:
    """The fake decodes id i to the word "t<i>": [1, 2, 3] is "t1 t2 t3" (3 words, 8 chars)."""
    r = post(server, {"model": EMB, "input": [[1, 2, 3], [7]]})
    assert r.status_code == 200, r.text
    same = post(server, {"model": EMB, "input": ["t1 t2 t3", "t7"]})
    assert r.json()["data"] == same.json()["data"]
    assert r.json()["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    flat = post(server, {"model": EMB, "input": [1, 2, 3]})  # one input as a flat id list
    assert flat.json()["data"][0]["embedding"] == same.json()["data"][0]["embedding"]
