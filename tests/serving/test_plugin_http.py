"""Calling a plugin (``serving.plugin_http``) against a real local aiohttp server: what the
plugin receives, each failure as an ``{"error": …}`` observation, and the address rules
(nothing reaches the server when the address is refused)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import aiohttp
import pytest

from modelgrid.protocol.app_tools import AppTool
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.plugin_addresses import networks
from modelgrid.serving.plugin_http import MAX_RESPONSE_BYTES, PluginCaller
from tests.plugin_server import PluginServer

LOOPBACK = networks(["127.0.0.1/32"])


@pytest.fixture
def plugin() -> Iterator[PluginServer]:
    server = PluginServer().start()
    yield server
    server.stop()


def tool(url: str, **kw: object) -> AppTool:
    fields: dict[str, object] = {"name": "weather", "description": "Weather now.", "url": url}
    return AppTool.model_validate({**fields, **kw})


async def test_post_with_headers_and_token(
    plugin: PluginServer, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    caller = PluginCaller(metrics, LOOPBACK)
    t = tool(
        f"{plugin.url}/weather?v=1",
        headers={"X-Api-Key": "svc-secret"},
        user_token_header="Authorization",
    )
    with caplog.at_level(logging.DEBUG, logger="modelgrid.serving.plugin_http"):
        result = await caller.call(t, {"city": "Lyon", "days": 2}, "user-tok", app_id="app-1")
    assert (result.ok, result.outcome, result.status, result.text) == (
        True,
        "ok",
        200,
        '{"temperature_c": 21}',
    )
    [got] = plugin.received
    assert (got.method, got.path, got.query, got.body) == (
        "POST",
        "/weather",
        {"v": "1"},
        {"city": "Lyon", "days": 2},
    )
    assert got.headers["X-Api-Key"] == "svc-secret"
    assert got.headers["Authorization"] == "Bearer user-tok"
    assert "Cookie" not in got.headers
    assert metrics.plugin_calls == {"ok": 1}
    assert "svc-secret" not in caplog.text and "user-tok" not in caplog.text


async def test_get_sends_scalars_as_query(plugin: PluginServer) -> None:
    caller = PluginCaller(Metrics(), LOOPBACK)
    t = tool(f"{plugin.url}/w", method="GET", user_token_header="X-User")
    result = await caller.call(
        t, {"city": "Lyon", "metric": True, "n": 3, "x": None}, "tok", app_id="a"
    )
    assert result.ok
    [got] = plugin.received
    assert (got.method, got.query, got.headers["X-User"]) == (
        "GET",
        {"city": "Lyon", "metric": "true", "n": "3"},
        "tok",
    )
    bad = await caller.call(t, {"city": ["a", "b"]}, None, app_id="a")
    assert (bad.ok, bad.outcome) == (False, "bad_request")
    assert json.loads(bad.text) == {
        "error": "A GET plugin takes scalar arguments only (no objects or arrays)."
    }
    assert len(plugin.received) == 1


@pytest.mark.parametrize(
    ("setup", "outcome", "error"),
    [
        (
            {"status": 500, "body": '{"detail": "boom"}'},
            "http_error",
            {"error": "The plugin answered HTTP 500.", "status": 500, "body": '{"detail": "boom"}'},
        ),
        (
            {"status": 302, "location": "http://169.254.169.254/"},
            "redirect",
            {
                "error": "The plugin answered with a redirect (HTTP 302), which is not followed.",
                "status": 302,
            },
        ),
        (
            {"body": "x" * (MAX_RESPONSE_BYTES + 1)},
            "too_large",
            {"error": "The plugin's response is over 65536 bytes.", "status": 200},
        ),
        ({"delay_s": 1.5}, "timeout", {"error": "The plugin did not answer within 1 s."}),
    ],
)
async def test_failures_are_observations(
    plugin: PluginServer,
    setup: dict[str, object],
    outcome: str,
    error: dict[str, object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for k, v in setup.items():
        setattr(plugin, k, v)
    metrics = Metrics()
    caller = PluginCaller(metrics, LOOPBACK)
    t = tool(f"{plugin.url}/w", timeout_s=1, headers={"X-Api-Key": "svc-secret"})
    with caplog.at_level(logging.WARNING, logger="modelgrid.serving.plugin_http"):
        result = await caller.call(t, {"city": "Lyon"}, None, app_id="app-9")
    assert (result.ok, result.outcome, json.loads(result.text)) == (False, outcome, error)
    assert metrics.plugin_calls == {outcome: 1}
    assert f"app=app-9 tool=weather outcome={outcome}" in caplog.text
    assert "svc-secret" not in caplog.text and "Lyon" not in caplog.text
    assert len(plugin.received) == 1  # one request: a redirect is not followed


async def test_connection_refused() -> None:
    closed = PluginServer().start()
    url = closed.url
    closed.stop()
    result = await PluginCaller(Metrics(), LOOPBACK).call(tool(url), {}, None, app_id="a")
    assert (result.outcome, json.loads(result.text)) == (
        "connect_error",
        {"error": "The plugin could not be reached."},
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.1/x", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("http://[::1]:8080/x", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/x", "::ffff:7f00:1 is a loopback address"),
    ],
)
async def test_refused_literal_addresses(url: str, why: str) -> None:
    metrics = Metrics()
    result = await PluginCaller(metrics).call(tool(url), {}, None, app_id="a")
    assert (result.outcome, json.loads(result.text)) == (
        "address_refused",
        {"error": f"The plugin's address is refused: {why}."},
    )
    assert metrics.plugin_calls == {"address_refused": 1}


async def test_loopback_refused_without_the_allow_list(
    plugin: PluginServer, caplog: pytest.LogCaptureFixture
) -> None:
    caller = PluginCaller(Metrics())  # no allow-list
    by_ip = await caller.call(tool(f"{plugin.url}/w"), {}, None, app_id="a")
    assert json.loads(by_ip.text) == {
        "error": "The plugin's address is refused: 127.0.0.1 is a loopback address."
    }
    # a host name that resolves to a loopback address is refused too
    with caplog.at_level(logging.WARNING, logger="modelgrid.serving.plugin_http"):
        by_name = await caller.call(tool(f"http://localhost:{plugin.port}/w"), {}, None, app_id="a")
    assert by_name.outcome == "address_refused"
    # the end user reads why, never the internal address the name resolved to
    assert json.loads(by_name.text) == {
        "error": "The plugin's address is refused: its host resolves to a refused address "
        "(loopback)."
    }
    assert "127.0.0.1" not in by_name.text and "::1" not in by_name.text
    assert "outcome=address_refused" in caplog.text  # the operator's log line has it
    assert "address=127.0.0.1" in caplog.text or "address=::1" in caplog.text
    assert plugin.received == []  # nothing reached the server
    # with the allow-list the same name is called, at the checked address
    allowed = PluginCaller(Metrics(), LOOPBACK)
    ok = await allowed.call(tool(f"http://localhost:{plugin.port}/w"), {}, None, app_id="a")
    if ok.outcome == "address_refused":  # localhost resolves to ::1 as well on this host
        assert "(loopback)" in ok.text
    else:
        assert ok.ok and len(plugin.received) == 1


async def test_unspecified_takes_an() -> None:
    result = await PluginCaller(Metrics()).call(tool("http://0.0.0.0/x"), {}, None, app_id="a")
    assert json.loads(result.text) == {
        "error": "The plugin's address is refused: 0.0.0.0 is an unspecified address."
    }


@pytest.mark.parametrize("value", ["a\u0001b", "a\x7fb"])
async def test_a_header_aiohttp_refuses_is_an_observation(plugin: PluginServer, value: str) -> None:
    # control.app_tools refuses such a value at creation, but one stored before is a
    # bad_request observation, not an exception (an API 500), and nothing is sent
    metrics = Metrics()
    t = tool(f"{plugin.url}/w").model_copy(update={"headers": {"X-Api-Key": value}})
    result = await PluginCaller(metrics, LOOPBACK).call(t, {}, None, app_id="a")
    assert (result.ok, result.outcome, json.loads(result.text)) == (
        False,
        "bad_request",
        {"error": "The plugin request could not be built (a header value is invalid)."},
    )
    assert metrics.plugin_calls == {"bad_request": 1}
    assert plugin.received == []


async def test_any_value_error_of_aiohttp_is_an_observation(
    plugin: PluginServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError("Forbidden control character detected in headers.")

    monkeypatch.setattr(aiohttp.ClientSession, "request", refuse)
    result = await PluginCaller(Metrics(), LOOPBACK).call(
        tool(f"{plugin.url}/w"), {}, None, app_id="a"
    )
    assert (result.outcome, json.loads(result.text)) == (
        "bad_request",
        {"error": "The plugin request could not be built (a header or the URL is invalid)."},
    )
