"""An app over a knowledge base with the real Qwen and embedding models behind a real server,
called with the official dashscope SDK's ``Application.call`` (only its base URL changed):
not streamed, streamed, one session over three turns, and a memory recalled in another."""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any

import dashscope
import httpx
import pytest

from tests.support import ProcessServer, db_rows

pytestmark = [pytest.mark.model, pytest.mark.e2e]
MODEL = "qwen2.5-coder-0.5b-instruct"
POLICY = b"""# Returns

Customers may return the Zephyr kettle within 45 days of delivery for a full refund.

# Shipping

Orders ship from Lyon. Delivery takes four working days within the EU.
"""


def _api(s: ProcessServer, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {s.api_key}"}  # type: ignore[attr-defined]
    return httpx.request(method, f"{s.base_url}{path}", headers=headers, timeout=60, **kw)


@pytest.fixture
def app_id(model_server: ProcessServer, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{model_server.base_url}/api/v1")
    kb = _api(model_server, "POST", "/v1/knowledge_bases", json={"name": "shop policy"}).json()
    doc = _api(
        model_server,
        "POST",
        f"/v1/knowledge_bases/{kb['id']}/documents",
        files={"file": ("policy.md", POLICY)},
    ).json()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = _api(model_server, "GET", f"/v1/knowledge_bases/{kb['id']}/documents/{doc['id']}")
        if got.json()["status"] in ("ready", "failed"):
            break
        time.sleep(0.1)
    assert got.json()["status"] == "ready", got.text
    app = _api(
        model_server,
        "POST",
        "/v1/apps",
        json={
            "name": "shop helpdesk",
            "model": MODEL,
            "instructions": "You answer questions about the shop in one short sentence.",
            "knowledge_base_ids": [kb["id"]],
            "retrieval": {"top_k": 2},
            "max_tokens": 24,
        },
    )
    assert app.status_code == 200, app.text
    return app.json()["id"], kb["id"]


def test_application_call_with_a_session(
    model_server: ProcessServer, app_id: tuple[str, str]
) -> None:
    app, kb = app_id
    key = model_server.api_key  # type: ignore[attr-defined]
    first = dashscope.Application.call(
        app_id=app,
        prompt="My name is Ana. How many days do I have to return the kettle?",
        memory_id="ana-1",
        api_key=key,
        temperature=0,
    )
    assert first.status_code == HTTPStatus.OK, first
    assert "45" in first.output.text, first.output.text
    assert first.output.finish_reason in ("stop", "length")
    refs = first.output.doc_references
    assert refs and refs[0].doc_name == "policy.md" and refs[0].title == "Returns"
    [usage] = first.usage.models
    assert usage.model_id == MODEL and usage.input_tokens > 50 and 0 < usage.output_tokens <= 24
    sid = first.output.session_id

    chunks = list(
        dashscope.Application.call(
            app_id=app,
            prompt="Where do orders ship from?",
            session_id=sid,
            rag_options={"pipeline_ids": [kb]},
            stream=True,
            incremental_output=True,
            api_key=key,
            temperature=0,
        )
    )
    assert all(c.status_code == HTTPStatus.OK for c in chunks), chunks[-1]
    assert len(chunks) > 2  # streamed piece by piece
    text = "".join(c.output.text for c in chunks)
    assert "Lyon" in text, text
    assert chunks[-1].output.session_id == sid
    assert chunks[-1].output.finish_reason in ("stop", "length")

    third = dashscope.Application.call(
        app_id=app,
        prompt="And how long does delivery take?",
        session_id=sid,
        api_key=key,
        temperature=0,
    )
    assert third.status_code == HTTPStatus.OK, third
    assert third.output.session_id == sid
    assert third.usage.models[0].input_tokens > usage.input_tokens  # the earlier turns came along
    turns = db_rows(
        model_server.db_path,  # type: ignore[attr-defined]
        "SELECT user_text FROM app_turns WHERE session_id = :s ORDER BY id",
        s=sid,
    )
    assert [t["user_text"] for t in turns] == [
        "My name is Ana. How many days do I have to return the kettle?",
        "Where do orders ship from?",
        "And how long does delivery take?",
    ]

    # long-term memory: a new session with the same memory_id recalls what the user said
    recalled = dashscope.Application.call(
        app_id=app, prompt="What is my name?", memory_id="ana-1", api_key=key, temperature=0
    )
    assert recalled.status_code == HTTPStatus.OK, recalled
    assert recalled.output.session_id != sid
    assert "Ana" in recalled.output.text, recalled.output.text
    facts = _api(model_server, "GET", "/v1/memories/ana-1").json()["facts"]
    assert [f["fact"] for f in facts] == ["My name is Ana."]


@pytest.mark.timeout(240)  # two model calls beyond the answers, one awaited in the background
def test_model_rewrite_and_model_memory(
    model_server: ProcessServer, app_id: tuple[str, str]
) -> None:
    """The app's model rewrites a follow-up into a standalone query and extracts the user's
    facts (after the answer), each a usage record of its own; only grounded facts stay."""
    app, _ = app_id
    key = model_server.api_key  # type: ignore[attr-defined]
    changed = _api(
        model_server,
        "POST",
        f"/v1/apps/{app}",
        json={"retrieval": {"top_k": 1, "query_rewrite": "model"}, "memory_extraction": "model"},
    )
    assert changed.status_code == 200, changed.text
    said = "My name is Ana and I live in Lyon. How many days do I have to return the kettle?"
    first = dashscope.Application.call(
        app_id=app, prompt=said, memory_id="ana-2", api_key=key, temperature=0
    )
    assert first.status_code == HTTPStatus.OK, first
    follow = dashscope.Application.call(
        app_id=app,
        prompt="And how long does delivery take?",
        session_id=first.output.session_id,
        has_thoughts=True,
        api_key=key,
        temperature=0,
    )
    assert follow.status_code == HTTPStatus.OK, follow
    action = follow.output.thoughts[0]["action_input"]
    assert action["query_rewrite"] == "model", action
    assert action["query"] != "And how long does delivery take?"
    assert follow.output.doc_references[0]["title"] == "Shipping", follow.output.doc_references
    [rewrite] = db_rows(
        model_server.db_path,  # type: ignore[attr-defined]
        "SELECT completion_tokens, status FROM usage_records "
        "WHERE endpoint = 'dashscope.apps.rewrite'",
    )
    assert rewrite["status"] == 200 and 0 < rewrite["completion_tokens"] <= 48
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        extracted = db_rows(
            model_server.db_path,  # type: ignore[attr-defined]
            "SELECT completion_tokens FROM usage_records WHERE endpoint = 'dashscope.apps.memory'",
        )
        if extracted:
            break
        time.sleep(0.2)
    assert len(extracted) == 1 and 0 < extracted[0]["completion_tokens"] <= 160
    # what the 0.5B model proposes varies; what is kept is only ever the user's own words
    r = _api(model_server, "GET", "/v1/memories/ana-2")
    assert r.status_code == 200, r.text
    kept = {f["fact"] for f in r.json()["facts"]}
    allowed = {"My name is Ana.", "I live in Lyon.", "My name is Ana and I live in Lyon."}
    assert kept and kept <= allowed, kept
