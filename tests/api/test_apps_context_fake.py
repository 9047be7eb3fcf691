"""An app call that cannot fit the model's context window is refused before anything is billed
(no query embedding, no rewrite), over a real uvicorn server and the scripted engines; one
that fits until the passages are added is still refused by the final check, as before.

The scripted model's window is 4096 "tokens" (words, ``engines.fake.prompt_words``).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.api.test_apps_fake import SQLITE, RecordingEngine, complete, make_app, ready_kb
from tests.conftest import ServerFactory
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.support import ThreadServer, create_key, usage_rows_matching

QUESTION = "When is a refund granted?"
# the app's instructions, "You are the shop's helpdesk.", are 5 words


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


@pytest.fixture
def embedder() -> HashEmbeddingEngine:
    return HashEmbeddingEngine()


@pytest.fixture
def server(
    server_factory: ServerFactory, engine: RecordingEngine, embedder: HashEmbeddingEngine
) -> ThreadServer:
    return server_factory(
        engine,
        embedder,
        knowledge={"poll_interval_s": 0.05, "chunk_tokens": 40, "chunk_overlap": 10},
    )


def _embeddings(server: ThreadServer, answered: int) -> int:
    """The ledger's embedding records (the documents' and the queries') once ``answered``
    calls have been answered and recorded: records are written in order, so every earlier
    call's are in by then."""
    deadline = time.monotonic() + 10
    answers = usage_rows_matching(server, endpoint="dashscope.apps", status=200)
    while len(answers) < answered and time.monotonic() < deadline:
        time.sleep(0.05)
        answers = usage_rows_matching(server, endpoint="dashscope.apps", status=200)
    assert len(answers) == answered
    return len(usage_rows_matching(server, endpoint="embeddings"))


@SQLITE
@pytest.mark.parametrize("sse", [False, True])
def test_an_input_too_long_for_the_window_is_refused_before_retrieval(
    server: ThreadServer, engine: RecordingEngine, embedder: HashEmbeddingEngine, sse: bool
) -> None:
    kb = ready_kb(server)
    app = make_app(server, knowledge_base_ids=[kb], retrieval={"query_rewrite": "model"})
    headers = {"X-DashScope-SSE": "enable"} if sse else {}
    first = complete(server, app["id"], {"input": {"prompt": QUESTION}})
    assert first.status_code == 200, first.text
    before = _embeddings(server, answered=1)
    embedded, prompts = len(embedder.batches), len(engine.prompts)
    # with an earlier turn, the model would rewrite the query (a metered call) first
    sid = first.json()["output"]["session_id"]
    long = {"input": {"prompt": "word " * 7000, "session_id": sid}}
    r = complete(server, app["id"], long, headers=headers)
    assert r.status_code == 400, r.text
    assert len(embedder.batches) == embedded  # the query was never embedded
    assert len(engine.prompts) == prompts  # nothing went to the model: no rewrite
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["code"] == "InvalidParameter"
    assert body["message"] == (  # 5 + the turn's 5 + 8 + 7000 words
        "This model's maximum context length is 4096 tokens. However, the app's prompt has "
        "7019 tokens (7018 before the knowledge bases' passages are added + 1 to answer). "
        "Please reduce the length of the input, the session's history or max_tokens."
    )
    # the next call that fits adds its query's embedding to the ledger, the refused one none
    ok = complete(server, app["id"], {"input": {"prompt": QUESTION}})
    assert ok.status_code == 200, ok.text
    assert _embeddings(server, answered=2) == before + 1


@SQLITE
def test_max_tokens_counts_and_the_session_history_counts(server: ThreadServer) -> None:
    kb = ready_kb(server)
    app = make_app(server, knowledge_base_ids=[kb], max_tokens=100)
    r = complete(server, app["id"], {"input": {"prompt": "word " * 3995}})
    assert r.status_code == 400, r.text  # 4000 words + 100 to answer > 4096
    message = r.json()["message"]
    assert "(4000 before the knowledge bases' passages are added + 100 to answer)" in message
    first = complete(server, app["id"], {"input": {"prompt": "word " * 2000}})
    assert first.status_code == 200, first.text
    before = _embeddings(server, answered=1)
    sid = first.json()["output"]["session_id"]
    r = complete(server, app["id"], {"input": {"prompt": "word " * 2000, "session_id": sid}})
    assert r.status_code == 400, r.text  # the stored turn is sent again
    assert (
        "(4013 before the knowledge bases' passages are added + 100 to answer)"
        in (r.json()["message"])
    )
    assert complete(server, app["id"], {"input": {"prompt": QUESTION}}).status_code == 200
    assert _embeddings(server, answered=2) == before + 1


@SQLITE
def test_passages_that_overflow_are_still_refused_after_retrieval(
    server: ThreadServer, engine: RecordingEngine
) -> None:
    kb = ready_kb(server)
    app = make_app(server, knowledge_base_ids=[kb], retrieval={"top_k": 2})
    prompt = (
        QUESTION + " word" * 4080
    )  # 4090 words with the instructions: fit alone, not with two passages
    r = complete(server, app["id"], {"input": {"prompt": prompt}})
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "Too long for the fake model."  # the model's own check
    user_turn = engine.prompts[-1][-1][1]
    assert user_turn.startswith("Use this information:") and user_turn.endswith(prompt)


@SQLITE
def test_a_key_that_may_not_use_the_apps_model_is_refused_before_retrieval(
    server: ThreadServer, embedder: HashEmbeddingEngine
) -> None:
    kb = ready_kb(server)
    app = make_app(server, knowledge_base_ids=[kb])
    admin = create_key(server.settings.database_url, role="admin", workspace="admin").plaintext
    me = httpx.get(
        f"{server.base_url}/admin/v1/workspaces",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    ).json()["data"]
    default = next(w["id"] for w in me if w["name"] == "default")
    narrow = httpx.post(  # the embedding model only: the query could be embedded, not answered
        f"{server.base_url}/admin/v1/workspaces/{default}/keys",
        headers={"Authorization": f"Bearer {admin}"},
        json={"name": "narrow", "allowed_models": ["hash-embedding"]},
        timeout=30,
    ).json()["key"]
    embedded = len(embedder.batches)
    r = complete(server, app["id"], {"input": {"prompt": QUESTION}}, key=narrow)
    assert r.status_code == 403, r.text
    assert r.json()["message"] == "This API key may not use the model 'fake-model'."
    assert len(embedder.batches) == embedded  # the query was never embedded (nor billed)
