"""The Responses API over a real uvicorn server, the scripted FakeEngine and the `openai` SDK."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import openai
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory, SettingsFactory
from tests.databases import BOTH_DATABASES
from tests.support import ThreadServer, db_execute, db_rows, usage_rows

MODEL = "fake-model"
QUESTION = "What is the capital of France?"  # 6 "tokens"
CALL_REPLY = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client(server: ThreadServer, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key=key or server.api_key, max_retries=0
    )


def post(server: ThreadServer, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    return httpx.post(f"{server.base_url}/v1/responses", json=body, headers=headers, timeout=10)


def test_create_returns_a_stored_response_with_usage(fake_server: ThreadServer) -> None:
    c = client(fake_server)
    r = c.responses.create(model=MODEL, input=QUESTION)
    assert r.output_text == "Paris is the capital of France."
    assert r.status == "completed" and r.id.startswith("resp_")
    assert [item.type for item in r.output] == ["message"]
    assert r.output[0].id.startswith("msg_")
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (6, 6, 12)
    assert r.usage.input_tokens_details.cached_tokens == 0
    again = c.responses.retrieve(r.id)
    assert again.model_dump() == r.model_dump()
    rows = usage_rows(fake_server, expect=1)
    assert [(x["endpoint"], x["prompt_tokens"], x["completion_tokens"]) for x in rows] == [
        ("responses", 6, 6)
    ]


def test_stream_events_in_the_reference_order_with_the_stored_ids(
    fake_server: ThreadServer,
) -> None:
    c = client(fake_server)
    with c.responses.stream(model=MODEL, input=QUESTION, instructions="Be brief.") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 6,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "Paris is the capital of France."
    )
    stored = c.responses.retrieve(final.id)
    assert stored.output[0].id == final.output[0].id == events[2].item.id  # type: ignore[union-attr]
    assert stored.instructions == "Be brief."
    assert final.usage is not None and final.usage.input_tokens == 8  # instructions count


def _normalise(text: str) -> str:
    text = re.sub(r'"(resp|msg|fc)_[0-9a-f]{48}"', r'"\1_ID"', text)
    return re.sub(r'"created_at":\d+', '"created_at":0', text)


def test_stream_wire_bytes_golden(server_factory: ServerFactory) -> None:
    server = server_factory(FakeEngine(reply="Hi there"))
    headers = {"Authorization": f"Bearer {server.api_key}"}
    body = {"model": MODEL, "input": "Hello", "stream": True, "store": False}
    with httpx.stream(
        "POST", f"{server.base_url}/v1/responses", json=body, headers=headers, timeout=10
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = _normalise(r.read().decode())
    events = text.split("\n\n")
    assert events[-1] == ""
    first = events[0].split("\n")
    assert first[0] == "event: response.created"
    created = json.loads(first[1].removeprefix("data: "))
    assert created["response"]["status"] == "in_progress"
    assert created["response"]["usage"] is None and created["response"]["store"] is False
    assert events[2:10] == [
        'event: response.output_item.added\ndata: {"type":"response.output_item.added",'
        '"sequence_number":2,"output_index":0,"item":{"id":"msg_ID","type":"message",'
        '"status":"in_progress","role":"assistant","content":[]}}',
        'event: response.content_part.added\ndata: {"type":"response.content_part.added",'
        '"sequence_number":3,"item_id":"msg_ID","output_index":0,"content_index":0,'
        '"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}}',
        'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        '"sequence_number":4,"item_id":"msg_ID","output_index":0,"content_index":0,'
        '"delta":"Hi","logprobs":[]}',
        'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        '"sequence_number":5,"item_id":"msg_ID","output_index":0,"content_index":0,'
        '"delta":" there","logprobs":[]}',
        'event: response.output_text.done\ndata: {"type":"response.output_text.done",'
        '"sequence_number":6,"item_id":"msg_ID","output_index":0,"content_index":0,'
        '"text":"Hi there","logprobs":[]}',
        'event: response.content_part.done\ndata: {"type":"response.content_part.done",'
        '"sequence_number":7,"item_id":"msg_ID","output_index":0,"content_index":0,'
        '"part":{"type":"output_text","text":"Hi there","annotations":[],"logprobs":[]}}',
        'event: response.output_item.done\ndata: {"type":"response.output_item.done",'
        '"sequence_number":8,"output_index":0,"item":{"id":"msg_ID","type":"message",'
        '"status":"completed","role":"assistant","content":[{"type":"output_text",'
        '"text":"Hi there","annotations":[],"logprobs":[]}]}}',
        events[9],
    ]
    assert events[9].startswith("event: response.completed\n")
    done = json.loads(events[9].split("\n")[1].removeprefix("data: "))
    assert done["sequence_number"] == 9
    assert done["response"]["usage"] == {
        "input_tokens": 1,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 3,
    }


@BOTH_DATABASES
def test_a_function_call_round_trip_chained_over_three_turns(
    server_factory: ServerFactory, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory()
    server = server_factory(FakeEngine(reply=CALL_REPLY, context_length=256), settings=settings)
    c = client(server)
    first = c.responses.create(model=MODEL, input="Weather in Paris?", tools=[WEATHER_TOOL])  # type: ignore[list-item]
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert call.id.startswith("fc_") and call.call_id
    second = c.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny 21C"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="none",
    )
    assert second.output_text == CALL_REPLY  # tool_choice none: the reply stays text
    server.stop()  # the chain outlives the process
    again = server_factory(FakeEngine(reply="It is sunny.", context_length=256), settings=settings)
    third = client(again, server.api_key).responses.create(
        model=MODEL, previous_response_id=second.id, input="Thanks!"
    )
    assert third.output_text == "It is sunny."
    items = client(again, server.api_key).responses.input_items.list(third.id, order="asc")
    kinds = [(i.type, getattr(i, "role", None)) for i in items.data]
    assert kinds == [
        ("message", "user"),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items.data[1].id == call.id  # type: ignore[union-attr]
    # Each turn's prompt held the whole conversation before it.
    rows = usage_rows(again, expect=3)
    prompts = [r["prompt_tokens"] for r in rows]
    assert prompts[0] < prompts[1] < prompts[2]
    assert len(rows) == 3 and {r["endpoint"] for r in rows} == {"responses"}


def test_input_items_pages(fake_server: ThreadServer) -> None:
    c = client(fake_server)
    r = c.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": f"word{i}"} for i in range(5)],  # type: ignore[misc]
    )
    desc = c.responses.input_items.list(r.id, limit=2)
    assert [i.content[0].text for i in desc.data] == ["word4", "word3"]  # type: ignore[union-attr]
    assert desc.has_more is True and desc.last_id == desc.data[1].id
    nxt = c.responses.input_items.list(r.id, limit=2, after=desc.last_id)
    assert [i.content[0].text for i in nxt.data] == ["word2", "word1"]  # type: ignore[union-attr]
    everything = [i.content[0].text for i in c.responses.input_items.list(r.id, order="asc")]  # type: ignore[union-attr]
    assert everything == [f"word{i}" for i in range(5)]


@BOTH_DATABASES
def test_unreadable_ids_are_404s_that_name_them(fake_server: ThreadServer) -> None:
    c = client(fake_server)
    mine = c.responses.create(model=MODEL, input=QUESTION)
    other = client(fake_server, fake_server.new_key(workspace="other"))
    with pytest.raises(openai.NotFoundError) as caught:
        other.responses.retrieve(mine.id)
    assert mine.id in str(caught.value)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model=MODEL, input="hi", previous_response_id=mine.id)
    r = httpx.get(
        f"{fake_server.base_url}/v1/responses/resp_nope",
        headers={"Authorization": f"Bearer {fake_server.api_key}"},
    )
    assert r.status_code == 404 and r.json()["error"]["param"] is None
    r = post(fake_server, {"model": MODEL, "input": "hi", "previous_response_id": "resp_nope"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "response_not_found"
    assert r.json()["error"]["param"] == "previous_response_id"
    assert "resp_nope" in r.json()["error"]["message"]
    unstored = c.responses.create(model=MODEL, input=QUESTION, store=False)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(unstored.id)
    expired = c.responses.create(model=MODEL, input=QUESTION)
    db_execute(
        fake_server,
        "UPDATE responses SET expires_at = :t WHERE id = :id",
        t="2000-01-01 00:00:00",
        id=expired.id,
    )
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(expired.id)
    assert c.responses.delete(mine.id) is None
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.delete(mine.id)
    assert db_rows(fake_server, "SELECT id FROM responses WHERE id = :id", id=mine.id) == []


@BOTH_DATABASES
def test_a_chain_with_a_deleted_link_is_refused_naming_it(fake_server: ThreadServer) -> None:
    c = client(fake_server)
    one = c.responses.create(model=MODEL, input="one")
    two = c.responses.create(model=MODEL, input="two", previous_response_id=one.id)
    c.responses.delete(one.id)
    r = post(fake_server, {"model": MODEL, "input": "three", "previous_response_id": two.id})
    assert r.status_code == 404
    assert one.id in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "hi", "background": True}, "background"),
        ({"input": "hi", "include": ["code_interpreter_call.outputs"]}, "include[0]"),
        ({"input": "hi", "text": {"format": {"type": "xml"}}}, "text.format"),
        (
            {"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format.schema",
        ),
        (
            {
                "input": "hi",
                "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "z"}}},
            },
            "text.format.schema",
        ),
        (
            {
                "input": "hi",
                "text": {
                    "format": {
                        "type": "json_schema",
                        "name": "x",
                        "schema": {"type": "integer", "multipleOf": 3},
                    }
                },
            },
            "text.format.schema",
        ),
        (
            {
                "input": "hi",
                "tools": [{**WEATHER_TOOL, "parameters": {"type": "object", "not": {}}}],
                "tool_choice": "required",
            },
            "tools[0].parameters",
        ),
        ({"input": "hi", "tool_choice": "required"}, "tool_choice"),
        ({"input": []}, "input"),
        ({"input": "hi", "top_p": 1.5}, "top_p"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(
    fake_server: ThreadServer, body: dict[str, Any], param: str
) -> None:
    r = post(fake_server, {"model": MODEL, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert db_rows(fake_server, "SELECT request_id FROM usage_records") == []


def test_documented_ranges_are_accepted(fake_server: ThreadServer) -> None:
    r = client(fake_server).responses.create(
        model=MODEL, input=QUESTION, top_p=0, temperature=0, max_output_tokens=2
    )
    assert r.status == "incomplete"
    assert r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.output_text == "Paris is"


def test_truncation_auto_drops_the_oldest_turns(server_factory: ServerFactory) -> None:
    server = server_factory(FakeEngine(context_length=24))
    turns: list[dict[str, Any]] = []
    for i in range(4):
        turns += [
            {"role": "user", "content": f"question {i} about things"},
            {"role": "assistant", "content": "an answer of five words"},
        ]
    turns.append({"role": "user", "content": QUESTION})
    body = {"model": MODEL, "input": turns, "max_output_tokens": 6}
    assert post(server, body).status_code == 400  # disabled: the reference's default
    r = post(server, {**body, "truncation": "auto"})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["input_tokens"] + 6 <= 24


def test_logprobs_come_with_include(fake_server: ThreadServer) -> None:
    body = {
        "model": MODEL,
        "input": QUESTION,
        "include": ["message.output_text.logprobs"],
        "top_logprobs": 2,
    }
    r = post(fake_server, body)
    assert r.status_code == 200, r.text
    part = r.json()["output"][0]["content"][0]
    assert [lp["token"] for lp in part["logprobs"]][:2] == ["Paris", " is"]
    assert part["logprobs"][0]["logprob"] == -0.5
    assert [t["logprob"] for t in part["logprobs"][0]["top_logprobs"]] == [-0.5, -1.5]
    plain = post(fake_server, {"model": MODEL, "input": QUESTION}).json()
    assert plain["output"][0]["content"][0]["logprobs"] == []


def test_a_failure_mid_stream_ends_with_error_and_a_stored_failed_response(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(FakeEngine(fail_after_tokens=2))
    headers = {"Authorization": f"Bearer {server.api_key}"}
    body = {"model": MODEL, "input": QUESTION, "stream": True}
    with httpx.stream(
        "POST", f"{server.base_url}/v1/responses", json=body, headers=headers, timeout=10
    ) as r:
        events = [
            json.loads(line.removeprefix("data: "))
            for line in r.iter_lines()
            if line.startswith("data: ")
        ]
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["error", "response.failed"]
    assert kinds.count("response.output_text.delta") == 2
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"]
    stored = client(server).responses.retrieve(failed["id"])
    assert stored.status == "failed" and stored.output_text == "Paris is"
    rows = usage_rows(server, expect=1)
    assert [(x["endpoint"], x["completion_tokens"]) for x in rows] == [("responses", 2)]
    assert rows[0]["status"] != 200


def test_retention_deletes_expired_responses_only(fake_server: ThreadServer) -> None:
    c = client(fake_server)
    old = c.responses.create(model=MODEL, input=QUESTION)
    kept = c.responses.create(model=MODEL, input=QUESTION)
    db_execute(
        fake_server,
        "UPDATE responses SET expires_at = :t WHERE id = :id",
        t="2000-01-01 00:00:00",
        id=old.id,
    )
    assert fake_server.call(fake_server.state.responses.store.purge_expired()) == 1
    ids = [r["id"] for r in db_rows(fake_server, "SELECT id FROM responses")]
    assert ids == [kept.id]
