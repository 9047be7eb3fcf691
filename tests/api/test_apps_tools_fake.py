"""Apps' tools (plugins) over a real uvicorn server, a scripted engine and a real local aiohttp
plugin server: the round trip (what the plugin receives, the answer, usage summed over rounds
and one ledger row per round, thoughts), streaming with the official ``dashscope`` SDK,
failures as observations, bad definitions, missing ``biz_params``, workspace isolation, and
secrets kept out of responses, logs and the audit log.

``ToolEngine`` answers a round that may call tools with a ``<tool_call>`` for ``weather``
(Qwen's format, parsed by the engines' shared output assembly) until it sees a ``tool``
message (always, with ``always_call``), and with ``ANSWER`` otherwise; it keeps every request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import dashscope
import httpx
import pytest
from cryptography.fernet import Fernet

from modelgrid.core.errors import EngineError
from modelgrid.core.types import Delta, InferenceRequest, ToolChoiceMode
from modelgrid.engines.base import PreparedRequest
from modelgrid.engines.fake import FakeEngine, prompt_words
from modelgrid.protocol.app_tools import MASK
from modelgrid.storage.sealing import Sealer, sealer_for
from tests.api.test_apps_fake import call, complete, make_app, sse_events
from tests.conftest import ServerFactory
from tests.plugin_server import PluginServer
from tests.support import ThreadServer, create_key, db_execute, db_rows

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ANSWER = "It is 21 degrees in Lyon."
CALL = '<tool_call>\n{"name": "weather", "arguments": {"city": "Lyon"}}\n</tool_call>'
SECRET = "svc-secret-4711"
TOKEN = "user-token-0815"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
    "required": ["city", "unit"],
}
BIZ = {
    "user_defined_params": {"weather": {"unit": "celsius"}},
    "user_defined_tokens": {"weather": {"user_token": TOKEN}},
}


class ToolEngine(FakeEngine):
    def __init__(self) -> None:
        super().__init__(reply=ANSWER, context_length=4096)
        self.requests: list[InferenceRequest] = []
        self.call_reply = CALL
        self.always_call = False
        self.fail_answer = False  # the round after the calls fails

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        self.requests.append(request)
        return super().prepare(request)

    async def stream(self, prepared: PreparedRequest) -> AsyncGenerator[Delta, None]:
        r = prepared.request
        answered = any(m.role == "tool" for m in r.messages or [])
        calls = r.tool_mode is not ToolChoiceMode.NONE and (self.always_call or not answered)
        self.reply = self.call_reply if calls else ANSWER  # read before the first yield
        if answered and self.fail_answer:
            raise EngineError("The fake engine failed on purpose.")
        async for delta in super().stream(prepared):
            yield delta


@pytest.fixture
def engine() -> ToolEngine:
    return ToolEngine()


@pytest.fixture
def plugin() -> Iterator[PluginServer]:
    server = PluginServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(server_factory: ServerFactory, engine: ToolEngine) -> ThreadServer:
    return server_factory(engine, apps={"plugin_allowed_networks": ["127.0.0.1/32"]})


def weather(plugin: PluginServer, **kw: Any) -> dict[str, Any]:
    return {
        "type": "plugin",
        "name": "weather",
        "description": "The weather in a city now.",
        "parameters": SCHEMA,
        "url": f"{plugin.url}/weather",
        "headers": {"X-Api-Key": SECRET},
        "user_params": ["unit"],
        "user_token_header": "Authorization",
        **kw,
    }


def ask(s: ThreadServer, app_id: str, **parameters: Any) -> dict[str, Any]:
    body = {"input": {"prompt": "Weather in Lyon?", "biz_params": BIZ}, "parameters": parameters}
    r = complete(s, app_id, body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def answer_rows(s: ThreadServer, n: int) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + 10
    while True:
        rows = db_rows(
            s,
            "SELECT * FROM usage_records WHERE endpoint = 'dashscope.apps' ORDER BY created_at",
        )
        if len(rows) >= n or time.monotonic() > deadline:
            assert len(rows) == n, rows
            return rows
        time.sleep(0.05)


@SQLITE
def test_round_trip(
    server: ThreadServer,
    engine: ToolEngine,
    plugin: PluginServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(server, tools=[weather(plugin)])
    with caplog.at_level(logging.DEBUG, logger="modelgrid"):
        body = ask(server, app["id"], has_thoughts=True)
    # the plugin got the model's arguments, the pass-through value, the header and the token
    [got] = plugin.received
    assert (got.method, got.path, got.body) == (
        "POST",
        "/weather",
        {"city": "Lyon", "unit": "celsius"},
    )
    assert (got.headers["X-Api-Key"], got.headers["Authorization"]) == (SECRET, f"Bearer {TOKEN}")
    assert body["output"]["text"] == ANSWER
    assert body["output"]["finish_reason"] == "stop"
    # two rounds: the first declares the tool without its pass-through parameter
    first, second = engine.requests
    [declared] = first.tools
    assert (declared.name, declared.parameters) == (
        "weather",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
    assert first.tool_mode is ToolChoiceMode.AUTO
    tail = (second.messages or [])[-2:]
    assert [(m.role, m.content) for m in tail] == [
        ("assistant", None),
        ("tool", '{"temperature_c": 21}'),
    ]
    assert [(c.name, json.loads(c.arguments)) for c in tail[0].tool_calls] == [
        ("weather", {"city": "Lyon"})
    ]
    assert tail[1].tool_call_id == tail[0].tool_calls[0].id
    # usage: one ledger row per round, the response's models entry their sum
    p1, p2 = len(prompt_words(first)), len(prompt_words(second))
    c1, c2 = len(CALL.split(" ")), len(ANSWER.split(" "))
    rows = answer_rows(server, 2)
    assert sorted((r["prompt_tokens"], r["completion_tokens"]) for r in rows) == sorted(
        [(p1, c1), (p2, c2)]
    )
    assert {r["request_id"] for r in rows} == {body["request_id"], second.request_id}
    assert second.request_id != body["request_id"]
    assert body["usage"]["models"] == [
        {"model_id": "fake-model", "input_tokens": p1 + p2, "output_tokens": c1 + c2}
    ]
    # thoughts: the model's own arguments (no pass-through value), the plugin's answer
    assert body["output"]["thoughts"] == [
        {
            "thought": "Called the plugin 'weather'.",
            "action_type": "api",
            "action_name": "weather",
            "action": "plugin",
            "action_input": {"city": "Lyon"},
            "observation": '{"temperature_c": 21}',
            "response": "",
        }
    ]
    # the session keeps the question and the answer
    sid = body["output"]["session_id"]
    turns = db_rows(
        server, "SELECT user_text, assistant_text FROM app_turns WHERE session_id = :s", s=sid
    )
    assert [(t["user_text"], t["assistant_text"]) for t in turns] == [("Weather in Lyon?", ANSWER)]
    assert SECRET not in caplog.text and TOKEN not in caplog.text
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    assert 'modelgrid_app_plugin_calls_total{outcome="ok"} 1.0' in metrics
    assert "modelgrid_app_plugin_call_duration_seconds_count 1.0" in metrics


@SQLITE
def test_streaming_with_the_sdk(
    server: ThreadServer, plugin: PluginServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(server, tools=[weather(plugin)])
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{server.base_url}/api/v1")
    for incremental in (True, False):
        chunks = list(
            dashscope.Application.call(
                app_id=app["id"],
                prompt="Weather in Lyon?",
                biz_params=BIZ,
                stream=True,
                incremental_output=incremental,
                has_thoughts=True,
                api_key=server.api_key,
            )
        )
        assert all(c.status_code == 200 for c in chunks), chunks
        texts = [c.output.text for c in chunks]
        assert ("".join(texts) if incremental else texts[-1]) == ANSWER
        assert chunks[-1].output.finish_reason == "stop"
        assert chunks[-1].output.thoughts[0].action_name == "weather"
        # the event sent as the round of calls ended: its thoughts, no text of its own
        shown = [c for c in chunks[:-1] if c.output.thoughts]
        assert len(shown) == 1 and shown[0].output.thoughts[0].action_name == "weather"
        assert shown[0].output.finish_reason in (None, "null")
        assert shown[0].output.text == ""  # the round of calls wrote no text
        assert chunks.index(shown[0]) == 0  # before any of the answer's text
        assert chunks[-1].usage.models[0].output_tokens == len(CALL.split(" ")) + len(
            ANSWER.split(" ")
        )
    assert len(plugin.received) == 2


@SQLITE
@pytest.mark.parametrize(
    ("setup", "observation"),
    [
        (
            {"status": 500, "body": "down"},
            {"error": "The plugin answered HTTP 500.", "status": 500, "body": "down"},
        ),
        ({"delay_s": 1.5}, {"error": "The plugin did not answer within 1 s."}),
        (
            {"body": "x" * 70_000},
            {"error": "The plugin's response is over 65536 bytes.", "status": 200},
        ),
    ],
)
def test_plugin_failures_are_observations(
    server: ThreadServer,
    engine: ToolEngine,
    plugin: PluginServer,
    setup: dict[str, Any],
    observation: dict[str, Any],
) -> None:
    for k, v in setup.items():
        setattr(plugin, k, v)
    app = make_app(server, tools=[weather(plugin, timeout_s=1)])
    body = ask(server, app["id"], has_thoughts=True)
    assert body["output"]["text"] == ANSWER
    assert json.loads(body["output"]["thoughts"][0]["observation"]) == observation
    assert (engine.requests[-1].messages or [])[-1].content == json.dumps(
        observation, separators=(",", ":")
    )


@SQLITE
def test_refused_address_and_bad_arguments(
    server: ThreadServer, engine: ToolEngine, plugin: PluginServer
) -> None:
    app = make_app(server, tools=[weather(plugin)])
    # the model's arguments miss a required property: no call, an error observation
    engine.call_reply = (
        '<tool_call>\n{"name": "weather", "arguments": {"town": "Lyon"}}\n</tool_call>'
    )
    body = ask(server, app["id"], has_thoughts=True)
    assert body["output"]["text"] == ANSWER
    assert json.loads(body["output"]["thoughts"][0]["observation"]) == {
        "error": "Invalid arguments for 'weather': 'city' is a required property."
    }
    assert plugin.received == []
    # an app whose URL became a refused address (stored before the allow-list narrowed)
    engine.call_reply = CALL
    tools = [{**weather(plugin), "url": "http://169.254.169.254/latest/meta-data"}]
    db_execute(server, "UPDATE apps SET tools = :t WHERE id = :i", t=json.dumps(tools), i=app["id"])
    body = ask(server, app["id"], has_thoughts=True)
    assert body["output"]["text"] == ANSWER
    assert json.loads(body["output"]["thoughts"][0]["observation"]) == {
        "error": "The plugin's address is refused: 169.254.169.254 is a link-local address."
    }
    assert plugin.received == []


@SQLITE
def test_max_tool_rounds(server: ThreadServer, engine: ToolEngine, plugin: PluginServer) -> None:
    engine.always_call = True
    app = make_app(server, tools=[weather(plugin)], tool_choice="required", max_tool_rounds=2)
    body = ask(server, app["id"])
    assert body["output"]["text"] == ANSWER
    modes = [r.tool_mode for r in engine.requests]
    assert modes == [ToolChoiceMode.REQUIRED, ToolChoiceMode.AUTO, ToolChoiceMode.NONE]
    assert len(plugin.received) == 2
    answer_rows(server, 3)


@SQLITE
def test_missing_biz_params_before_anything_runs(
    server: ThreadServer, engine: ToolEngine, plugin: PluginServer
) -> None:
    app = make_app(server, tools=[weather(plugin)])
    for biz, param in (
        (None, "input.biz_params.user_defined_params.weather.unit"),
        (
            {"user_defined_params": {"weather": {"unit": "c"}}},
            "input.biz_params.user_defined_tokens.weather.user_token",
        ),
        (
            {
                "user_defined_params": {"weather": {}},
                "user_defined_tokens": BIZ["user_defined_tokens"],
            },
            "input.biz_params.user_defined_params.weather.unit",
        ),
    ):
        r = complete(server, app["id"], {"input": {"prompt": "hi", "biz_params": biz}})
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "InvalidParameter"
        assert r.json()["message"].startswith(f"'{param}' is required")
    assert engine.requests == [] and plugin.received == []
    assert db_rows(server, "SELECT * FROM usage_records") == []


@SQLITE
def test_bad_definitions(server: ThreadServer, plugin: PluginServer) -> None:
    good = weather(plugin)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tools": [{**good, "url": "ftp://example.com/x"}]}, "tools[0].url"),
        ({"tools": [{**good, "url": "http://bob:pw@example.com/x"}]}, "tools[0].url"),
        ({"tools": [{**good, "url": "http://169.254.169.254/"}]}, "tools[0].url"),
        ({"tools": [{**good, "url": "http://10.0.0.1/"}]}, "tools[0].url"),
        ({"tools": [good, good]}, "tools[1].name"),
        ({"tools": [{**good, "name": "9lives"}]}, "tools[0].name"),
        ({"tools": [{**good, "description": ""}]}, "tools[0].description"),
        (
            {
                "tools": [
                    {
                        **good,
                        "parameters": {"type": "object", "properties": {"a": {"type": "bogus"}}},
                    }
                ]
            },
            "tools[0].parameters",
        ),
        ({"tools": [{**good, "parameters": {"type": "string"}}]}, "tools[0].parameters.type"),
        ({"tools": [{**good, "user_params": ["nope"]}]}, "tools[0].user_params[0]"),
        ({"tools": [{**good, "headers": {"Bad Name": "x"}}]}, "tools[0].headers"),
        ({"tools": [{**good, "headers": {"X-Api-Key": "a\u0001b"}}]}, "tools[0].headers.X-Api-Key"),
        ({"tools": [{**good, "headers": {"X-Api-Key": "a\u007fb"}}]}, "tools[0].headers.X-Api-Key"),
        ({"tools": [{**good, "headers": {"X-Api-Key": "a\u0085b"}}]}, "tools[0].headers.X-Api-Key"),
        ({"tools": [{**good, "headers": {"X-Api-Key": "a\nb"}}]}, "tools[0].headers.X-Api-Key"),
        ({"tools": [{**good, "headers": {"X-Api-Key": "****"}}]}, "tools[0].headers.X-Api-Key"),
        ({"tools": [{**good, "url": "http://example.com/a\u007fb"}]}, "tools[0].url"),
        ({"tools": [{**good, "url": "http://example.com/a\u0090b"}]}, "tools[0].url"),
        ({"tools": [{**good, "url": "http://0.0.0.0/"}]}, "tools[0].url"),
        ({"tools": [{**good, "headers": {"Authorization": "x"}}]}, "tools[0].user_token_header"),
        ({"tools": [{**good, "method": "PUT"}]}, "tools[0].method"),
        ({"tools": [{**good, "timeout_s": 31}]}, "tools[0].timeout_s"),
        ({"tools": [{**good, "name": f"t{i}"} for i in range(17)]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [good], "max_tool_rounds": 9}, "max_tool_rounds"),
    ]
    messages = {}
    for extra, param in cases:
        body = {"name": "x", "model": "fake-model", **extra}
        r = call(server, "POST", "/v1/apps", json=body)
        assert r.status_code == 400, (param, r.text)
        assert r.json()["error"]["param"] == param, (param, r.json())
        messages[json.dumps(extra)] = r.json()["error"]["message"]
    assert call(server, "GET", "/v1/apps").json()["data"] == []
    by_header = lambda v: messages[json.dumps({"tools": [{**good, "headers": {"X-Api-Key": v}}]})]  # noqa: E731
    assert by_header("a\u007fb") == (
        "The value of 'tools[0].headers.X-Api-Key' holds the control character U+007F: a header "
        "value may hold TAB, spaces and visible characters only."
    )
    assert by_header("****") == (
        "'tools[0].headers.X-Api-Key': '****' is the mask of a stored value; send the value."
    )
    unspecified = messages[json.dumps({"tools": [{**good, "url": "http://0.0.0.0/"}]})]
    assert unspecified.startswith("'tools[0].url': the host '0.0.0.0' is an unspecified address")


def _stored_secret(server: ThreadServer, stored: Any) -> str:
    """The ``X-Api-Key`` of an app's stored tools: sealed at rest (no plaintext, no mask in
    the row), opened with the server's key."""
    tools = json.loads(stored) if isinstance(stored, str) else stored
    sealed = tools[0]["headers"]["X-Api-Key"]
    assert sealed.startswith("sealed:v1:") and SECRET not in str(stored) and MASK not in sealed
    return sealer_for(server.settings).open(sealed)


@SQLITE
def test_a_secret_sealed_with_another_key_is_a_503_and_plaintext_of_before_still_works(
    server: ThreadServer, engine: ToolEngine, plugin: PluginServer
) -> None:
    """A value sealed with another key (gateways given different keys): the call is refused
    before anything runs, a 503 naming the setting, nothing billed. A plaintext value (stored
    before sealing) is sent as it is, and sealed when the app is next written."""
    app = make_app(server, tools=[weather(plugin)])
    row = db_rows(server, "SELECT tools FROM apps WHERE id = :i", i=app["id"])[0]["tools"]
    tools = json.loads(row) if isinstance(row, str) else row
    other = Sealer(Fernet.generate_key())
    tools[0]["headers"]["X-Api-Key"] = other.seal(SECRET)
    db_execute(server, "UPDATE apps SET tools = :t WHERE id = :i", t=json.dumps(tools), i=app["id"])
    r = complete(server, app["id"], {"input": {"prompt": "Weather?", "biz_params": BIZ}})
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "InternalError"  # DashScope's code for the server's fault
    assert "MODELGRID_SECRET_KEY" in r.json()["message"] and SECRET not in r.text
    assert plugin.received == [] and db_rows(server, "SELECT * FROM usage_records") == []
    tools[0]["headers"]["X-Api-Key"] = SECRET  # as written before sealing
    db_execute(server, "UPDATE apps SET tools = :t WHERE id = :i", t=json.dumps(tools), i=app["id"])
    ask(server, app["id"])
    assert plugin.received[-1].headers["X-Api-Key"] == SECRET
    shown = call(server, "GET", f"/v1/apps/{app['id']}").json()
    r = call(server, "POST", f"/v1/apps/{app['id']}", json={"tools": shown["tools"]})
    assert r.status_code == 200, r.text
    stored = db_rows(server, "SELECT tools FROM apps WHERE id = :i", i=app["id"])[0]["tools"]
    assert _stored_secret(server, stored) == SECRET


@SQLITE
def test_secrets_masked_and_isolated(
    server: ThreadServer, plugin: PluginServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="modelgrid"):
        app = make_app(server, tools=[weather(plugin)])
        assert app["tools"][0]["headers"] == {"X-Api-Key": "****"}
        assert (app["tool_choice"], app["max_tool_rounds"]) == ("auto", 4)
        got = call(server, "GET", f"/v1/apps/{app['id']}").json()
        assert got == app
        # an update replaces the whole list (the secret sent again)
        other = {**weather(plugin), "name": "forecast", "headers": {"X-Api-Key": SECRET + "b"}}
        r = call(server, "POST", f"/v1/apps/{app['id']}", json={"tools": [other]})
        assert r.status_code == 200, r.text
        assert [(t["name"], t["headers"]) for t in r.json()["tools"]] == [
            ("forecast", {"X-Api-Key": "****"})
        ]
    assert SECRET not in caplog.text
    audit = json.dumps(db_rows(server, "SELECT action, details FROM audit_log"), default=str)
    assert "app.create" in audit and SECRET not in audit
    stored = db_rows(server, "SELECT tools FROM apps WHERE id = :i", i=app["id"])[0]["tools"]
    assert _stored_secret(server, stored) == SECRET + "b"  # kept for the calls, sealed
    # another workspace's app is a 404, for managing and calling alike
    other_key = create_key(server.settings.database_url, name="other", workspace="acme").plaintext
    assert call(server, "GET", f"/v1/apps/{app['id']}", other_key).status_code == 404
    r = complete(server, app["id"], {"input": {"prompt": "hi", "biz_params": BIZ}}, key=other_key)
    assert r.status_code == 404
    assert plugin.received == []


@SQLITE
def test_a_later_round_failing(
    server: ThreadServer, engine: ToolEngine, plugin: PluginServer
) -> None:
    """The first round is opened before the first byte; a later round's failure is the
    request's error: plain JSON when not streamed, an error event in the stream."""
    engine.fail_answer = True
    app = make_app(server, tools=[weather(plugin)])
    body = {"input": {"prompt": "Weather in Lyon?", "biz_params": BIZ}}
    r = complete(server, app["id"], body)
    assert r.status_code >= 500 and set(r.json()) == {"request_id", "code", "message"}, r.text
    streamed = complete(
        server,
        app["id"],
        {**body, "parameters": {"incremental_output": True}},
        headers={"X-DashScope-SSE": "enable"},
    )
    assert streamed.status_code == 200
    events = sse_events(streamed.content)
    assert events[-1][1] == "event:error"
    assert set(events[-1][3]) == {"request_id", "code", "message"}
    assert len(plugin.received) == 2  # each call ran its first round and its plugin
    sids = db_rows(server, "SELECT id FROM app_sessions")
    turns = db_rows(server, "SELECT id FROM app_turns")
    assert len(sids) == 2 and turns == []  # no answer: no turn stored


@SQLITE
def test_the_admin_api(server: ThreadServer, plugin: PluginServer) -> None:
    admin = create_key(server.settings.database_url, role="admin", workspace="admin").plaintext
    path = "/admin/v1/workspaces/default/apps"
    body = {"name": "x", "model": "fake-model", "tools": [weather(plugin)]}
    r = call(server, "POST", path, admin, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["tools"][0]["headers"] == {"X-Api-Key": "****"}
    bad = {**body, "tools": [{**weather(plugin), "url": "http://[::1]/x"}]}
    r = call(server, "POST", f"{path}/{r.json()['id']}", admin, json={"tools": bad["tools"]})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "tools[0].url")


@SQLITE
def test_loopback_refused_without_the_allow_list(
    server_factory: ServerFactory, engine: ToolEngine, plugin: PluginServer
) -> None:
    bare = server_factory(engine)  # no apps.plugin_allowed_networks
    r = call(
        bare,
        "POST",
        "/v1/apps",
        json={"name": "x", "model": "fake-model", "tools": [weather(plugin)]},
    )
    assert (r.status_code, r.json()["error"]["param"]) == (400, "tools[0].url")
    assert r.json()["error"]["message"].startswith(
        "'tools[0].url': the host '127.0.0.1' is a loopback address"
    )
    # the numeric forms the system resolver reads as 127.0.0.1 are literals too
    for host in ("2130706433", "127.1", "0x7f.1"):
        tool = weather(plugin, url=f"http://{host}:{plugin.port}/weather")
        r = call(
            bare, "POST", "/v1/apps", json={"name": "x", "model": "fake-model", "tools": [tool]}
        )
        assert (r.status_code, r.json()["error"]["param"]) == (400, "tools[0].url"), host
        assert r.json()["error"]["message"].startswith(
            f"'tools[0].url': the host '{host}' is a loopback address"
        )
    # one stored anyway (before the operator removed the allow-list): refused at call time
    app = make_app(bare, tools=[weather(plugin, url="https://plugins.example.com/weather")])
    db_execute(
        bare,
        "UPDATE apps SET tools = :t WHERE id = :i",
        t=json.dumps([weather(plugin)]),
        i=app["id"],
    )
    body = ask(bare, app["id"], has_thoughts=True)
    assert body["output"]["text"] == ANSWER
    assert json.loads(body["output"]["thoughts"][0]["observation"]) == {
        "error": "The plugin's address is refused: 127.0.0.1 is a loopback address."
    }
    assert plugin.received == []  # nothing reached the server


@SQLITE
def test_bad_biz_params_say_what_is_wrong(
    server: ThreadServer, engine: ToolEngine, plugin: PluginServer
) -> None:
    app = make_app(server, tools=[weather(plugin)])
    token = "input.biz_params.user_defined_tokens.weather.user_token"
    unit = "input.biz_params.user_defined_params.weather.unit"
    control = (
        "holds the control character {}: it is sent as an HTTP header value, which may hold "
        "TAB, spaces and visible characters only."
    )
    tokens = BIZ["user_defined_tokens"]
    for biz, param, message in (
        (
            {**BIZ, "user_defined_tokens": {"weather": {"user_token": "a\u0001b"}}},
            token,
            control.format("U+0001"),
        ),
        (
            {**BIZ, "user_defined_tokens": {"weather": {"user_token": "a\u007fb"}}},
            token,
            control.format("U+007F"),
        ),
        (
            {**BIZ, "user_defined_tokens": {"weather": {"user_token": 5}}},
            token,
            "must be a non-empty string.",
        ),
        (
            {**BIZ, "user_defined_tokens": {"weather": {"user_token": ""}}},
            token,
            "must be a non-empty string.",
        ),
        (
            {"user_defined_params": [], "user_defined_tokens": tokens},
            "input.biz_params.user_defined_params",
            "must be an object (keyed by tool name).",
        ),
        (
            {"user_defined_params": {"weather": "celsius"}, "user_defined_tokens": tokens},
            "input.biz_params.user_defined_params.weather",
            "must be an object (keyed by parameter name).",
        ),
        (
            {"user_defined_params": {"weather": {"unit": 5}}, "user_defined_tokens": tokens},
            unit,
            "does not fit the tool's schema: 5 is not of type 'string' (at 'unit').",
        ),
    ):
        r = complete(server, app["id"], {"input": {"prompt": "hi", "biz_params": biz}})
        assert r.status_code == 400, r.text
        assert (r.json()["code"], r.json()["message"]) == (
            "InvalidParameter",
            f"'{param}' {message}",
        )
    # nothing ran, nothing was billed
    assert engine.requests == [] and plugin.received == []
    assert db_rows(server, "SELECT * FROM usage_records") == []


@SQLITE
def test_masked_values_sent_back_keep_the_secret(
    server: ThreadServer, engine: ToolEngine, plugin: PluginServer
) -> None:
    app = make_app(server, tools=[weather(plugin)])
    shown = call(server, "GET", f"/v1/apps/{app['id']}").json()
    assert shown["tools"][0]["headers"] == {"X-Api-Key": "****"}
    # sent back as read (a changed description): the stored secret stays
    tools = [{**shown["tools"][0], "description": "The weather now, in a city."}]
    r = call(server, "POST", f"/v1/apps/{app['id']}", json={"tools": tools})
    assert r.status_code == 200, r.text
    ask(server, app["id"])
    assert plugin.received[-1].headers["X-Api-Key"] == SECRET
    stored = db_rows(server, "SELECT tools FROM apps")[0]["tools"]
    assert _stored_secret(server, stored) == SECRET
    # a masked header the stored tool does not have: a 400 naming it
    extra = [{**tools[0], "headers": {"X-Api-Key": "****", "X-Other": "****"}}]
    r = call(server, "POST", f"/v1/apps/{app['id']}", json={"tools": extra})
    assert (r.status_code, r.json()["error"]) == (
        400,
        {
            "message": "'tools[0].headers.X-Other': '****' is the mask of a stored value; "
            "send the value.",
            "type": "invalid_request_error",
            "param": "tools[0].headers.X-Other",
            "code": "invalid_request",
        },
    )
    # tools: null is a 400 (send [] to remove every tool); [] removes them
    r = call(server, "POST", f"/v1/apps/{app['id']}", json={"tools": None})
    assert (r.status_code, r.json()["error"]["param"], r.json()["error"]["message"]) == (
        400,
        "tools",
        "'tools' may not be null: send [] to remove every tool.",
    )
    assert call(server, "GET", f"/v1/apps/{app['id']}").json()["tools"][0]["name"] == "weather"
    r = call(server, "POST", f"/v1/apps/{app['id']}", json={"tools": []})
    assert (r.status_code, r.json()["tools"]) == (200, [])


@SQLITE
def test_a_long_observation_is_cut_for_the_model(
    server: ThreadServer, engine: ToolEngine, plugin: PluginServer
) -> None:
    plugin.body = json.dumps({"text": "x" * 20_000})  # 20,012 characters, under 64 KiB
    app = make_app(server, tools=[weather(plugin)])
    body = ask(server, app["id"], has_thoughts=True)
    fed = (engine.requests[-1].messages or [])[-1]
    assert fed.role == "tool"
    assert fed.content == plugin.body[:8000] + "…[truncated: 8000 of 20012 characters shown]"
    # the thought keeps its own cut (4 KiB)
    assert body["output"]["thoughts"][0]["observation"] == plugin.body[:4096]
