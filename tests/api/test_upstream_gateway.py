"""The gateway serving models through upstreams: a ``modelgrid engine`` worker app and a
scripted upstream, both real local servers; clients use the official openai SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from modelgrid.config import Settings
from modelgrid.engines.base import Engine
from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.registry import gateway_engines
from modelgrid.engines.upstream import UpstreamEngine
from modelgrid.worker import create_worker_app
from tests.conftest import make_settings
from tests.scripted_upstream import (
    AppThread,
    Exchange,
    Receive,
    ScriptedUpstream,
    Send,
    body,
    chunk,
    event,
    json_reply,
    start_sse,
    stream_reply,
)
from tests.support import ThreadServer, create_key, free_port, usage_rows

TOKEN = "worker-secret"
MSG = [{"role": "user", "content": "What is the capital of France?"}]  # 6 words for FakeEngine
ESTIMATE = 8 + 4 + 3  # what the gateway estimates for MSG: ceil(30 chars / 4) + 4 + 3


@pytest.fixture
def worker() -> Iterator[AppThread]:
    engine = FakeEngine("fake-model", context_length=64)
    server = AppThread(create_worker_app(lambda: engine, token=TOKEN), "/health/ready").start()
    yield server
    server.stop()


class Gateway(ThreadServer):
    """The gateway; ``stop`` first closes the upstream engines it built (their pools)."""

    built: list[Engine]

    def stop(self) -> None:
        async def close() -> None:
            for e in self.built:
                await e.aclose()

        if self.thread.is_alive():
            self.call(close())
        super().stop()


def serve(settings: Settings, factory: Callable[[Settings], list[Engine]]) -> Gateway:
    built: list[Engine] = []

    def build(s: Settings) -> list[Engine]:
        built.extend(factory(s))
        return built

    server = Gateway(settings, build)
    server.built = built
    server.api_key = create_key(settings.database_url, name="t").plaintext  # type: ignore[attr-defined]
    return server.start()  # type: ignore[return-value]


def gateway(tmp_path: Path, database_url: str, *engines: UpstreamEngine) -> Gateway:
    return serve(make_settings(tmp_path, database_url), lambda _s: list(engines))


@pytest.fixture
def via_worker(tmp_path: Path, database_url: str, worker: AppThread) -> Iterator[ThreadServer]:
    up = UpstreamEngine(
        "gpt-up", f"{worker.base_url}/v1", upstream_model="fake-model", api_key=TOKEN
    )
    server = gateway(tmp_path, database_url, up)
    yield server
    server.stop()


_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """SDK clients hold keep-alive sockets: closed after each test, not left to the GC."""
    yield
    while _clients:
        _clients.pop().close()


def client(server: ThreadServer) -> openai.OpenAI:
    c = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0)  # type: ignore[attr-defined]
    _clients.append(c)
    return c


def test_json_answer_and_usage_from_the_upstream(via_worker: ThreadServer, tmp_path: Path) -> None:
    c = client(via_worker)
    assert "gpt-up" in [m.id for m in c.models.list()]
    r = c.chat.completions.create(model="gpt-up", messages=MSG)  # type: ignore[arg-type]
    assert r.model == "gpt-up"
    assert r.choices[0].message.content == "Paris is the capital of France."
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (6, 6)  # type: ignore[union-attr]
    [row] = usage_rows(via_worker, expect=1)
    assert (row["model"], row["prompt_tokens"], row["completion_tokens"]) == ("gpt-up", 6, 6)
    assert row["prompt_tokens"] != ESTIMATE  # the upstream's count, not the estimate


def test_a_non_streamed_request_is_a_plain_upstream_call(tmp_path: Path, database_url: str) -> None:
    app = ScriptedUpstream(
        json_reply(
            200,
            {
                "choices": [
                    {"index": 0, "message": {"content": "Paris."}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17},
            },
        )
    )
    upstream = AppThread(app).start()
    up = UpstreamEngine("gpt-up", f"{upstream.base_url}/v1", context_length=4096)
    server = gateway(tmp_path, database_url, up)
    try:
        r = client(server).chat.completions.create(model="gpt-up", messages=MSG)  # type: ignore[arg-type]
        assert r.choices[0].message.content == "Paris."
        assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (14, 3)  # type: ignore[union-attr]
        sent = app.exchanges[-1].body
        assert "stream" not in sent and "stream_options" not in sent
        [row] = usage_rows(server, expect=1)
        assert (row["prompt_tokens"], row["completion_tokens"], row["status"]) == (14, 3, 200)
    finally:
        server.stop()
        upstream.stop()


def test_stream_and_usage_from_the_upstream(via_worker: ThreadServer, tmp_path: Path) -> None:
    chunks = list(
        client(via_worker).chat.completions.create(
            model="gpt-up",
            messages=MSG,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [ch.choices[0].delta.content for ch in chunks if ch.choices]
    assert "".join(p or "" for p in pieces) == "Paris is the capital of France."
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (6, 6)
    [row] = usage_rows(via_worker, expect=1)
    assert (row["prompt_tokens"], row["completion_tokens"], row["status"]) == (6, 6, 200)


def test_upstream_context_error_passes_through(via_worker: ThreadServer) -> None:
    long = [{"role": "user", "content": "word " * 100}]
    with pytest.raises(openai.BadRequestError) as info:
        client(via_worker).chat.completions.create(model="gpt-up", messages=long)  # type: ignore[arg-type]
    assert info.value.code == "context_length_exceeded"
    assert "Too long for the fake model." in info.value.message
    # Refused before any token: the gateway only had an estimate of the prompt, and bills none.
    [row] = usage_rows(via_worker, expect=1)
    assert (row["status"], row["prompt_tokens"], row["completion_tokens"]) == (400, 0, 0)
    assert row["cost_micros"] == 0


def test_wrong_upstream_credentials_are_a_502(
    tmp_path: Path, database_url: str, worker: AppThread
) -> None:
    up = UpstreamEngine("gpt-up", f"{worker.base_url}/v1", upstream_model="fake-model")
    server = gateway(tmp_path, database_url, up)
    try:
        with pytest.raises(openai.APIStatusError) as info:
            client(server).chat.completions.create(model="gpt-up", messages=MSG)  # type: ignore[arg-type]
        # 502, or 503 "no replica available" once routing has tried every replica (the
        # error is retryable: another replica may hold the right credentials)
        assert info.value.status_code in (502, 503)
    finally:
        server.stop()


def refusals(server: ThreadServer) -> list[openai.APIStatusError]:
    """The errors of one chat request sent without, then with, ``stream``."""
    errors = []
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as info:
            r = client(server).chat.completions.create(
                model="gpt-up",
                messages=MSG,  # type: ignore[arg-type]
                stream=stream,
            )
            list(r) if stream else None  # type: ignore[call-overload]
        errors.append(info.value)
    return errors


def test_refused_only_upstream_is_a_503_with_retry_after_streamed_or_not(
    tmp_path: Path, database_url: str
) -> None:
    """The only replica refuses the connection (retryable): routing finds no other replica,
    so every allowed one is down — 503 with ``Retry-After``, as plain JSON even when the
    client asked for a stream (nothing had been sent yet)."""
    up = UpstreamEngine("gpt-up", f"http://127.0.0.1:{free_port()}/v1", context_length=4096)
    server = gateway(tmp_path, database_url, up)
    try:
        for err in refusals(server):
            assert err.status_code == 503
            assert err.response.headers["content-type"] == "application/json"
            assert int(err.response.headers["retry-after"]) >= 1
            assert err.code == "no_healthy_replica"
    finally:
        server.stop()


def test_upstream_dying_mid_stream_ends_in_an_error_event(
    tmp_path: Path, database_url: str
) -> None:
    async def dies(ex: Exchange, send: Send, receive: Receive) -> None:
        await start_sse(send)
        await body(send, event(chunk("", role="assistant")))
        await body(send, event(chunk("Paris")))
        await body(send, event(chunk(" is")))
        raise RuntimeError("the upstream process died")

    app = ScriptedUpstream(dies)
    upstream = AppThread(app).start()
    up = UpstreamEngine("gpt-up", f"{upstream.base_url}/v1", context_length=4096)
    server = gateway(tmp_path, database_url, up)
    try:
        got: list[str] = []
        stream = client(server).chat.completions.create(model="gpt-up", messages=MSG, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError) as info:
            for ch in stream:
                if ch.choices and ch.choices[0].delta.content:
                    got.append(ch.choices[0].delta.content)
        assert "".join(got) == "Paris is"
        assert "dropped the connection" in info.value.message
        [row] = usage_rows(server, expect=1)
        assert (row["status"], row["finish_reason"], row["completion_tokens"]) == (502, "error", 2)
    finally:
        server.stop()
        upstream.stop()


def test_settings_serve_an_upstream_without_local_models(
    tmp_path: Path, database_url: str, worker: AppThread
) -> None:
    settings = make_settings(
        tmp_path,
        database_url,
        engine={"models": [], "embedding_models": []},
        upstreams=[
            {
                "model": "gpt-up",
                "base_url": f"{worker.base_url}/v1",
                "upstream_model": "fake-model",
                "api_key": TOKEN,
            }
        ],
    )
    server = serve(settings, gateway_engines)
    try:
        c = client(server)
        assert [m.id for m in c.models.list()] == ["gpt-up"]
        assert c.models.retrieve("gpt-up").context_length == 64  # type: ignore[attr-defined]
        r = c.chat.completions.create(model="gpt-up", messages=MSG)  # type: ignore[arg-type]
        assert r.choices[0].message.content == "Paris is the capital of France."
    finally:
        server.stop()


def test_a_client_leaving_a_non_streamed_request_stops_the_worker(
    tmp_path: Path, database_url: str
) -> None:
    """client → gateway → worker, not streamed: the client gives up, the gateway cancels its
    plain upstream call (closing the connection), and the worker stops generating."""
    import time

    import httpx

    slow = FakeEngine(
        "fake-model", reply=" ".join(["w"] * 60), token_delay_s=0.05, context_length=4096
    )
    worker = AppThread(create_worker_app(lambda: slow, token=TOKEN), "/health/ready").start()
    up = UpstreamEngine(
        "gpt-up", f"{worker.base_url}/v1", upstream_model="fake-model", api_key=TOKEN
    )
    server = gateway(tmp_path, database_url, up)
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{server.base_url}/v1/chat/completions",
                json={"model": "gpt-up", "messages": MSG, "max_tokens": 60},
                headers={"Authorization": f"Bearer {server.api_key}"},  # type: ignore[attr-defined]
                timeout=1.5,  # the worker is generating by then, even on a loaded machine
            )
        deadline = time.monotonic() + 2
        while slow.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slow.cancelled == 1  # well before its 3 s generation would end
        [row] = usage_rows(server, expect=1)
        assert (row["status"], row["finish_reason"]) == (499, "cancelled")
    finally:
        server.stop()
        worker.stop()


def test_text_completions_through_a_worker(via_worker: ThreadServer) -> None:
    r = client(via_worker).completions.create(model="gpt-up", prompt="The capital", max_tokens=2)
    assert r.choices[0].text == "Paris is"
    [row] = usage_rows(via_worker, expect=1)
    assert (row["endpoint"], row["completion_tokens"], row["status"]) == ("completions", 2, 200)


def test_an_overloaded_only_upstream_is_its_429_with_its_retry_after(
    tmp_path: Path, database_url: str
) -> None:
    """No other replica can take the request: the client gets the upstream's 429 and its
    ``Retry-After`` (not a 503 with a made-up one), streamed or not."""
    busy = json_reply(429, {"error": {"message": "slow down"}}, {"retry-after": "7"})
    upstream = AppThread(ScriptedUpstream(busy)).start()
    up = UpstreamEngine("gpt-up", f"{upstream.base_url}/v1", context_length=4096)
    server = gateway(tmp_path, database_url, up)
    try:
        for err in refusals(server):
            assert err.status_code == 429
            assert err.response.headers["retry-after"] == "7"
            assert err.code == "upstream_rate_limited"
            assert "slow down" in err.message
    finally:
        server.stop()
        upstream.stop()


def test_an_upstream_that_comes_back_takes_traffic_within_a_second(
    tmp_path: Path, database_url: str
) -> None:
    """The model's only replica is down long enough for its breaker to open, with the
    cool-down doubled; once it listens again, the next request goes to it (a trial through
    the open breaker) and every later one (the breaker closed): no lock-out by its own
    breaker, however long the cool-down had left."""
    port = free_port()
    up = UpstreamEngine("gpt-up", f"http://127.0.0.1:{port}/v1", context_length=4096)
    server = gateway(tmp_path, database_url, up)
    upstream: AppThread | None = None
    try:
        for _ in range(8):  # refused: the breaker opens, each failed trial doubles the wait
            with pytest.raises(openai.APIStatusError) as info:
                client(server).chat.completions.create(model="gpt-up", messages=MSG)  # type: ignore[arg-type]
            assert info.value.status_code == 503
        upstream = AppThread(ScriptedUpstream(stream_reply(["Paris."])), port=port).start()
        back = time.monotonic()
        while True:
            try:
                client(server).chat.completions.create(model="gpt-up", messages=MSG)  # type: ignore[arg-type]
                break
            except openai.APIStatusError:
                assert time.monotonic() - back < 1.0
                time.sleep(0.05)
        for _ in range(3):
            r = client(server).chat.completions.create(model="gpt-up", messages=MSG)  # type: ignore[arg-type]
            assert r.choices[0].message.content == "Paris."
    finally:
        server.stop()
        if upstream is not None:
            upstream.stop()


def test_a_workers_exact_prompt_count_is_used_from_the_first_event(
    via_worker: ThreadServer,
) -> None:
    """The worker sends its exact prompt count with its response headers, so every DashScope
    SSE event carries it — not the gateway's estimate until the last event."""
    headers = {
        "Authorization": f"Bearer {via_worker.api_key}",  # type: ignore[attr-defined]
        "X-DashScope-SSE": "enable",
    }
    body = {
        "model": "gpt-up",
        "input": {"prompt": "What is the capital of France?"},
        "parameters": {"incremental_output": True},
    }
    with httpx.stream(
        "POST",
        f"{via_worker.base_url}/api/v1/services/aigc/text-generation/generation",
        json=body,
        headers=headers,
        timeout=30,
    ) as r:
        events = [json.loads(ln[5:]) for ln in r.iter_lines() if ln.startswith("data:")]
    counts = {e["usage"]["input_tokens"] for e in events}
    assert len(events) >= 2 and counts == {6}  # the fake engine's count: 6 words, not ESTIMATE
    assert ESTIMATE != 6
