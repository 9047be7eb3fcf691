"""An app with a plugin (Model Studio's custom plugin) and the real Qwen model behind a real
server, called with the official dashscope SDK: with ``tool_choice: "required"`` the model
calls the plugin (a real local aiohttp server) with arguments that match its schema, and the
app answers from the plugin's result in the same call."""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import dashscope
import httpx
import pytest

from tests.plugin_server import PluginServer
from tests.support import ProcessServer

pytestmark = [pytest.mark.model, pytest.mark.e2e]
MODEL = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture
def plugin() -> Iterator[PluginServer]:
    server = PluginServer(body='{"city": "Lyon", "temperature_c": 21}').start()
    yield server
    server.stop()


def _app(s: ProcessServer, plugin: PluginServer) -> str:
    body: dict[str, Any] = {
        "name": "weather desk",
        "model": MODEL,
        "instructions": "You answer questions about the weather in one short sentence.",
        "max_tokens": 48,
        "tool_choice": "required",
        "max_tool_rounds": 1,
        "tools": [
            {
                "type": "plugin",
                "name": "get_weather",
                "description": "The current temperature in a city, in degrees Celsius.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "description": "The city."}},
                    "required": ["city"],
                },
                "url": f"{plugin.url}/weather",
                "headers": {"X-Api-Key": "e2e-secret"},
            }
        ],
    }
    headers = {"Authorization": f"Bearer {s.api_key}"}  # type: ignore[attr-defined]
    r = httpx.post(f"{s.base_url}/v1/apps", headers=headers, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_the_model_calls_the_plugin_and_answers(
    model_server: ProcessServer, plugin: PluginServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{model_server.base_url}/api/v1")
    app = _app(model_server, plugin)
    r = dashscope.Application.call(
        app_id=app,
        prompt="What is the temperature in Lyon right now?",
        api_key=model_server.api_key,  # type: ignore[attr-defined]
        temperature=0,
        has_thoughts=True,
    )
    assert r.status_code == HTTPStatus.OK, r
    [got] = plugin.received
    assert (got.method, got.path, got.headers["X-Api-Key"]) == ("POST", "/weather", "e2e-secret")
    assert isinstance(got.body, dict) and isinstance(got.body.get("city"), str), got.body
    assert set(got.body) <= {"city"}
    # at temperature 0 it says the plugin's figure (3 runs of 3: "The temperature in Lyon is
    # 21 degrees Celsius.")
    assert "21" in r.output.text, r.output.text
    assert r.output.finish_reason in ("stop", "length")
    [thought] = r.output.thoughts
    assert thought.action_name == "get_weather" and thought.action_input == got.body
    [usage] = r.usage.models
    assert usage.model_id == MODEL and usage.input_tokens > 0 and usage.output_tokens > 0

    # streamed: the first round's deltas are tool calls, the second round's text streams
    chunks = list(
        dashscope.Application.call(
            app_id=app,
            prompt="What is the temperature in Lyon right now?",
            api_key=model_server.api_key,  # type: ignore[attr-defined]
            temperature=0,
            stream=True,
            incremental_output=True,
        )
    )
    assert all(c.status_code == HTTPStatus.OK for c in chunks), chunks
    assert len(chunks) > 2 and "21" in "".join(c.output.text for c in chunks)
    assert len(plugin.received) == 2
