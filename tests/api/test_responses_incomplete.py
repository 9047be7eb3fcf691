"""A Responses answer cut off by ``max_output_tokens``: the response and the message item it
was writing are both ``incomplete``; a prompt too long for the window names ``input``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai

from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.support import ThreadServer

MODEL = "fake-model"
QUESTION = "What is the capital of France?"


def post(server: ThreadServer, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    return httpx.post(f"{server.base_url}/v1/responses", json=body, headers=headers, timeout=10)


def stream(server: ThreadServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/responses",
        json={**body, "stream": True},
        headers=headers,
        timeout=10,
    ) as r:
        assert r.status_code == 200
        return [
            json.loads(line.removeprefix("data: "))
            for line in r.iter_lines()
            if line.startswith("data: ")
        ]


def test_cut_off_message_is_incomplete(fake_server: ThreadServer) -> None:
    body = {"model": MODEL, "input": QUESTION, "max_output_tokens": 2}
    r = post(fake_server, body).json()
    assert r["status"] == "incomplete"
    assert r["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [(o["type"], o["status"]) for o in r["output"]] == [("message", "incomplete")]
    sdk = openai.OpenAI(base_url=f"{fake_server.base_url}/v1", api_key=fake_server.api_key)
    stored = sdk.responses.retrieve(r["id"])  # the SDK's types read it
    assert stored.output[0].status == "incomplete"  # type: ignore[union-attr]


def test_cut_off_message_is_incomplete_when_streamed(fake_server: ThreadServer) -> None:
    events = stream(fake_server, {"model": MODEL, "input": QUESTION, "max_output_tokens": 2})
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert [(e["item"]["type"], e["item"]["status"]) for e in done] == [("message", "incomplete")]
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert [o["status"] for o in last["response"]["output"]] == ["incomplete"]


def test_whole_message_is_completed(fake_server: ThreadServer) -> None:
    r = post(fake_server, {"model": MODEL, "input": QUESTION}).json()
    assert r["status"] == "completed"
    assert [o["status"] for o in r["output"]] == ["completed"]
    events = stream(fake_server, {"model": MODEL, "input": QUESTION})
    assert events[-1]["type"] == "response.completed"
    assert [o["status"] for o in events[-1]["response"]["output"]] == ["completed"]


def test_context_length_names_input(server_factory: ServerFactory) -> None:
    server = server_factory(FakeEngine(context_length=8))
    long = QUESTION + " Answer at length, please, with many words."
    for extra in ({}, {"stream": True}, {"truncation": "auto"}):
        r = post(server, {"model": MODEL, "input": long, **extra})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["code"], error["param"]) == ("context_length_exceeded", "input")
