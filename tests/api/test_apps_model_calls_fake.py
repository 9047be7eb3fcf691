"""The model's own calls around an app's answer, over a real uvicorn server and a scripted
engine: query rewriting (apps and vector store search), memory extraction after the answer,
and session expiry.

``ScriptedEngine`` answers the rewriting prompt, the extraction prompt and the app's
prompt each with its own scripted text, and keeps every request it was given.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelgrid.core.errors import EngineError
from modelgrid.core.types import Delta, InferenceRequest, ResponseFormatKind
from modelgrid.engines.base import PreparedRequest
from modelgrid.engines.fake import FakeEngine
from modelgrid.serving import memory_extraction, query_rewrite
from tests.api.test_apps_fake import REPLY, call, complete, make_app, ready_kb
from tests.conftest import ServerFactory
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.support import ThreadServer, db_execute, db_rows, usage_rows_matching

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the index


class ScriptedEngine(FakeEngine):
    """One scripted reply per kind of prompt; ``rewrite_fails``: the rewriting call fails;
    ``extract_delay_s``: the extraction call takes this long per word."""

    def __init__(self) -> None:
        super().__init__(reply=REPLY, context_length=4096)
        self.rewrite_reply = "shipping parcel arrival"
        self.facts_reply = '{"facts": ["My name is Ana", "I live in Lyon", "I live in Paris"]}'
        self.rewrite_fails = False
        self.extract_delay_s = 0.0
        self.requests: list[InferenceRequest] = []

    @staticmethod
    def kind(request: InferenceRequest) -> str:
        system = (request.messages or [])[0].content if request.messages else None
        if system == query_rewrite.SYSTEM:
            return "rewrite"
        if system == memory_extraction.SYSTEM:
            return "extract"
        return "answer"

    def of(self, kind: str) -> list[InferenceRequest]:
        return [r for r in self.requests if self.kind(r) == kind]

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        self.requests.append(request)
        return super().prepare(request)

    async def stream(self, prepared: PreparedRequest) -> AsyncGenerator[Delta, None]:
        kind = self.kind(prepared.request)
        if kind == "rewrite" and self.rewrite_fails:
            raise EngineError("The replica failed.")
        if kind == "extract" and self.extract_delay_s:
            await asyncio.sleep(self.extract_delay_s)
        # ``FakeEngine.stream`` reads ``self.reply`` before its first yield: set it, then
        # iterate at once (no await between them)
        self.reply = {"rewrite": self.rewrite_reply, "extract": self.facts_reply}.get(kind, REPLY)
        async for delta in super().stream(prepared):
            yield delta


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def server(server_factory: ServerFactory, engine: ScriptedEngine) -> ThreadServer:
    return server_factory(
        engine,
        HashEmbeddingEngine(),
        knowledge={"poll_interval_s": 0.05, "chunk_tokens": 40, "chunk_overlap": 10},
        apps={"session_ttl_s": 600, "sweep_interval_s": 0.1},
    )


def usage_of(s: ThreadServer, endpoint: str, n: int) -> list[dict[str, Any]]:
    """The usage records of ``endpoint`` once there are ``n`` (the writer flushes in
    batches)."""
    deadline = time.monotonic() + 10
    while True:
        rows = [
            r
            for r in db_rows(s, "SELECT * FROM usage_records ORDER BY created_at")
            if r["endpoint"] == endpoint
        ]
        if len(rows) >= n or time.monotonic() > deadline:
            assert len(rows) == n, rows
            return rows
        time.sleep(0.05)


def thoughts_of(body: dict[str, Any]) -> dict[str, Any]:
    return dict(body["output"]["thoughts"][0])


@SQLITE
def test_model_query_rewrite(
    server: ThreadServer, engine: ScriptedEngine, caplog: pytest.LogCaptureFixture
) -> None:
    kb = ready_kb(server)
    app = make_app(
        server,
        knowledge_base_ids=[kb],
        retrieval={"top_k": 1, "mode": "lexical", "query_rewrite": "model"},
    )
    assert app["retrieval"]["query_rewrite"] == "model"
    think = {"has_thoughts": True}
    first = complete(
        server, app["id"], {"input": {"prompt": "Tell me about refunds."}, "parameters": think}
    ).json()
    # a first question is its own query: no rewrite
    assert engine.of("rewrite") == []
    assert thoughts_of(first)["action_input"]["query"] == "Tell me about refunds."
    assert thoughts_of(first)["action_input"]["query_rewrite"] == "concat"
    sid = first["output"]["session_id"]

    second = complete(
        server,
        app["id"],
        {"input": {"prompt": "And how fast?", "session_id": sid}, "parameters": think},
    )
    assert second.status_code == 200, second.text
    body = second.json()
    thought = thoughts_of(body)
    assert thought["action_input"]["query"] == "shipping parcel arrival"
    assert thought["action_input"]["query_rewrite"] == "model"
    assert thought["thought"] == (
        "Searched the knowledge bases with the query the model rewrote from the conversation."
    )
    assert [p["title"] for p in json.loads(thought["observation"])] == ["Shipping"]
    [rewrite] = engine.of("rewrite")
    assert [(m.role, m.content) for m in rewrite.messages or []] == [
        ("system", query_rewrite.SYSTEM),
        (
            "user",
            f"Conversation:\nUser: Tell me about refunds.\nAssistant: {REPLY}\n\n"
            "Last message: And how fast?\n\nSearch query:",
        ),
    ]
    assert (rewrite.sampling.max_tokens, rewrite.sampling.temperature, rewrite.model) == (
        48,
        0.0,
        "fake-model",
    )
    # its own request and usage record, beside the answer's
    [rec] = usage_rows_matching(server, endpoint="dashscope.apps.rewrite")
    assert (rec["model"], rec["completion_tokens"], rec["status"]) == ("fake-model", 3, 200)
    assert rec["prompt_tokens"] == len(
        " ".join(m.content or "" for m in rewrite.messages or []).split()
    )
    assert rec["request_id"] == rewrite.request_id != body["request_id"]
    # (waits for this answer's own record: the first answer's being there says nothing)
    answers = usage_rows_matching(server, endpoint="dashscope.apps", request_id=body["request_id"])
    assert len(answers) == 1
    # the answer's prompt is unchanged: the question as the user asked it
    answer = engine.of("answer")[-1]
    assert (answer.messages or [])[-1].content.endswith("\n\nQuestion: And how fast?")  # type: ignore[union-attr]

    # an empty or cut-off rewrite falls back to the concatenated query, with a warning
    for reply in ("", " ".join(["word"] * 60)):
        engine.rewrite_reply = reply
        with caplog.at_level(logging.WARNING, logger="modelgrid.serving.query_rewrite"):
            r = complete(
                server,
                app["id"],
                {"input": {"prompt": "And shipping?", "session_id": sid}, "parameters": think},
            )
        assert r.status_code == 200, r.text
        thought = thoughts_of(r.json())
        assert thought["action_input"]["query_rewrite"] == "concat"
        assert thought["action_input"]["query"].endswith("\nAnd shipping?")
        assert "query rewrite by fake-model unusable" in caplog.text
        caplog.clear()
    usage_of(server, "dashscope.apps.rewrite", 3)

    # a failed rewrite is the request's error, in DashScope's shape, and no answer runs
    engine.rewrite_fails = True
    answered = len(engine.of("answer"))
    r = complete(server, app["id"], {"input": {"prompt": "And returns?", "session_id": sid}})
    # (the only replica failed: the router has no other to fail over to)
    assert (r.status_code, r.json()["code"]) == (503, "ModelUnavailable")
    assert r.json()["message"].startswith("No replica of the model 'fake-model' is available")
    assert len(engine.of("answer")) == answered
    turns = db_rows(server, "SELECT user_text FROM app_turns WHERE session_id = :s", s=sid)
    assert "And returns?" not in [t["user_text"] for t in turns]

    # the setting is the app's: back to concat, no rewrite call
    engine.rewrite_fails = False
    r = call(
        server,
        "POST",
        f"/v1/apps/{app['id']}",
        json={"retrieval": {"top_k": 1, "mode": "lexical", "query_rewrite": "concat"}},
    )
    assert r.json()["retrieval"]["query_rewrite"] == "concat"
    before = len(engine.of("rewrite"))
    complete(server, app["id"], {"input": {"prompt": "And shipping?", "session_id": sid}})
    assert len(engine.of("rewrite")) == before
    bad = call(
        server, "POST", f"/v1/apps/{app['id']}", json={"retrieval": {"query_rewrite": "llm"}}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "retrieval.query_rewrite"


@SQLITE
def test_vector_store_search_rewrites_the_query(
    server: ThreadServer, engine: ScriptedEngine
) -> None:
    r = call(
        server,
        "POST",
        "/v1/files",
        files={"file": ("ship.txt", b"Parcels arrive within three days of shipping.")},
        data={"purpose": "assistants"},
    )
    file_id = r.json()["id"]
    vs = call(server, "POST", "/v1/vector_stores", json={"name": "s", "file_ids": [file_id]})
    vs_id = vs.json()["id"]
    deadline = time.monotonic() + 20
    while call(server, "GET", f"/v1/vector_stores/{vs_id}").json()["file_counts"]["completed"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    search = f"/v1/vector_stores/{vs_id}/search"
    plain = call(server, "POST", search, json={"query": "how long until my parcel comes?"})
    assert plain.json()["search_query"] == ["how long until my parcel comes?"]
    assert engine.of("rewrite") == []

    r = call(
        server,
        "POST",
        search,
        json={"query": ["how long until my parcel comes?", "hi"], "rewrite_query": True},
    )
    assert r.status_code == 200, r.text
    assert r.json()["search_query"] == ["shipping parcel arrival", "shipping parcel arrival"]
    assert r.json()["data"][0]["file_id"] == file_id
    first = engine.of("rewrite")[0]
    assert (first.messages or [])[1].content == (
        "Last message: how long until my parcel comes?\n\nSearch query:"
    )
    rows = usage_of(server, "vector_stores.rewrite", 2)
    assert [(x["model"], x["completion_tokens"]) for x in rows] == [("fake-model", 3)] * 2
    # an unknown store costs no rewrite
    r = call(
        server,
        "POST",
        "/v1/vector_stores/vs_nope/search",
        json={"query": "x", "rewrite_query": True},
    )
    assert r.status_code == 404
    assert len(engine.of("rewrite")) == 2
    # nor does a query the search would refuse: the same 400 as without a rewrite
    for query in ("battery " * 1001, ["fine", " "], ["parcel"] * 11):
        r = call(server, "POST", search, json={"query": query, "rewrite_query": True})
        plain = call(server, "POST", search, json={"query": query})
        assert r.status_code == plain.status_code == 400
        assert r.json()["error"] == plain.json()["error"]
        assert r.json()["error"]["param"] == "query"
    assert len(engine.of("rewrite")) == 2
    # ten queries is the cap (each one a billed rewrite)
    r = call(server, "POST", search, json={"query": ["parcel"] * 11})
    assert r.json()["error"]["message"] == "'query' has 11 queries; at most 10."
    r = call(server, "POST", search, json={"query": ["parcel"] * 10, "rewrite_query": True})
    assert r.status_code == 200, r.text
    assert len(engine.of("rewrite")) == 12


def wait_facts(s: ThreadServer, memory_id: str, timeout_s: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = call(s, "GET", f"/v1/memories/{memory_id}")
        if r.status_code == 200:
            return [f["fact"] for f in r.json()["facts"]]
        time.sleep(0.05)
    raise AssertionError(f"no fact in {memory_id}")


@SQLITE
def test_model_memory_extraction_after_the_last_event(
    server: ThreadServer, engine: ScriptedEngine
) -> None:
    app = make_app(server, memory_extraction="model")
    assert app["memory_extraction"] == "model"
    engine.extract_delay_s = 1.5
    said = "My name is Ana. I live in Lyon. When do you ship?"
    started = time.perf_counter()
    r = complete(
        server,
        app["id"],
        {"input": {"prompt": said, "memory_id": "user-7"}},
        headers={"X-DashScope-SSE": "enable"},
    )
    answered_s = time.perf_counter() - started
    assert r.status_code == 200 and '"finish_reason":"stop"' in r.text
    assert answered_s < 1.0  # the extraction (1.5 s) did not hold the last event
    assert call(server, "GET", "/v1/memories/user-7").status_code == 404  # not yet
    # grounded facts only: "I live in Paris" is not in the user's words
    assert wait_facts(server, "user-7") == ["My name is Ana.", "I live in Lyon."]
    [extract] = engine.of("extract")
    assert [(m.role, m.content) for m in extract.messages or []] == [
        ("system", memory_extraction.SYSTEM),
        ("user", said),
    ]
    fmt = extract.sampling.response_format
    assert fmt is not None and fmt.kind is ResponseFormatKind.JSON_SCHEMA
    assert fmt.schema == memory_extraction.FACTS_SCHEMA
    assert (extract.sampling.max_tokens, extract.sampling.temperature) == (160, 0.0)
    [rec] = usage_rows_matching(server, endpoint="dashscope.apps.memory")
    assert (rec["completion_tokens"], rec["status"]) == (len(engine.facts_reply.split()), 200)
    assert rec["request_id"] == extract.request_id
    facts = db_rows(server, "SELECT request_id FROM app_memories WHERE memory_id = 'user-7'")
    [answer] = usage_rows_matching(server, endpoint="dashscope.apps")
    assert {f["request_id"] for f in facts} == {answer["request_id"]}  # the answer's turn

    # output that is not {"facts": [...]} keeps nothing; the rules are not applied either
    engine.extract_delay_s = 0.0
    engine.facts_reply = "I live in Lyon."
    r = complete(server, app["id"], {"input": {"prompt": "I'm a nurse.", "memory_id": "user-8"}})
    assert r.status_code == 200
    usage_of(server, "dashscope.apps.memory", 2)
    assert call(server, "GET", "/v1/memories/user-8").status_code == 404

    # an app left on rules: no extraction call, the rule's facts
    rules = make_app(server)
    before = len(engine.of("extract"))
    complete(server, rules["id"], {"input": {"prompt": "I'm a nurse.", "memory_id": "user-9"}})
    assert wait_facts(server, "user-9") == ["I'm a nurse."]
    assert len(engine.of("extract")) == before


@SQLITE
def test_an_idle_session_is_refused_before_the_sweep(
    server_factory: ServerFactory, engine: ScriptedEngine
) -> None:
    s = server_factory(engine, apps={"session_ttl_s": 600, "sweep_interval_s": 3600})
    app = make_app(s)
    sid = complete(s, app["id"], {"input": {"prompt": "hi"}}).json()["output"]["session_id"]
    assert complete(s, app["id"], {"input": {"prompt": "hi", "session_id": sid}}).status_code == 200
    # idle 599 s: still alive; 600 s (the TTL): expired, the same 404 as an unknown id,
    # though its row is still there (the sweep runs hourly here)
    for idle_s, status in ((599, 200), (600, 404)):
        at = datetime.now(UTC) - timedelta(seconds=idle_s)
        db_execute(s, "UPDATE app_sessions SET updated_at = :t WHERE id = :s", t=at, s=sid)
        r = complete(s, app["id"], {"input": {"prompt": "x", "session_id": sid}})
        assert r.status_code == status, (idle_s, r.text)
    assert r.json()["code"] == "SessionNotFound"
    assert r.json()["message"] == f"No such session of this app: '{sid}'."
    unknown = complete(s, app["id"], {"input": {"prompt": "x", "session_id": "f" * 32}})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "SessionNotFound")
    assert unknown.json()["message"] == f"No such session of this app: '{'f' * 32}'."
    assert db_rows(s, "SELECT id FROM app_sessions WHERE id = :s", s=sid)


@SQLITE
def test_an_idle_session_is_swept_with_its_turns(server: ThreadServer) -> None:
    app = make_app(server)
    sid = complete(server, app["id"], {"input": {"prompt": "hi"}}).json()["output"]["session_id"]
    fresh = complete(server, app["id"], {"input": {"prompt": "hi"}}).json()["output"]["session_id"]
    old = datetime.now(UTC) - timedelta(seconds=601)
    db_execute(server, "UPDATE app_sessions SET updated_at = :t WHERE id = :s", t=old, s=sid)
    deadline = time.monotonic() + 10
    while db_rows(server, "SELECT id FROM app_sessions WHERE id = :s", s=sid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert db_rows(server, "SELECT id FROM app_turns WHERE session_id = :s", s=sid) == []
    [entry] = db_rows(
        server, "SELECT actor, target, details FROM audit_log WHERE action = 'app.session.expire'"
    )
    assert (entry["actor"], entry["target"]) == ("system:expiry", "app_sessions")
    assert json.loads(entry["details"]) == {"sessions": 1, "ttl_s": 600}
    # the session used within the TTL stays, with its turn
    time.sleep(0.3)  # three more sweeps
    assert db_rows(server, "SELECT id FROM app_sessions WHERE id = :s", s=fresh)
    assert len(db_rows(server, "SELECT id FROM app_turns WHERE session_id = :s", s=fresh)) == 1
    r = complete(server, app["id"], {"input": {"prompt": "x", "session_id": sid}})
    assert (r.status_code, r.json()["code"]) == (404, "SessionNotFound")


@SQLITE
def test_an_extraction_in_flight_is_finished_on_shutdown(
    server_factory: ServerFactory, engine: ScriptedEngine
) -> None:
    s = server_factory(engine)
    app = make_app(s, memory_extraction="model")
    engine.extract_delay_s = 1.0
    said = "My name is Ana. I live in Lyon."
    r = complete(s, app["id"], {"input": {"prompt": said, "memory_id": "user-3"}})
    assert r.status_code == 200
    assert db_rows(s, "SELECT fact FROM app_memories") == []  # still extracting
    s.stop()  # the lifespan waits for it, then flushes usage
    facts = db_rows(s, "SELECT fact FROM app_memories WHERE memory_id = 'user-3' ORDER BY id")
    assert [f["fact"] for f in facts] == ["My name is Ana.", "I live in Lyon."]
    [rec] = [
        x
        for x in db_rows(s, "SELECT endpoint, status FROM usage_records")
        if x["endpoint"] == "dashscope.apps.memory"
    ]
    assert rec["status"] == 200
