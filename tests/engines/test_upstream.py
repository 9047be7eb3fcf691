"""``UpstreamEngine`` against a real local HTTP server that plays the upstream."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from modelgrid.core.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)
from modelgrid.core.types import ChatMessage, Delta, FinishReason, InferenceRequest, SamplingParams
from modelgrid.engines.upstream import UpstreamEngine, estimate_prompt_tokens
from tests.scripted_upstream import (
    DONE,
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
    usage_chunk,
)
from tests.support import free_port


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    app = ScriptedUpstream()
    server = AppThread(app).start()
    app.base_url = f"{server.base_url}/v1"  # type: ignore[attr-defined]
    yield app
    app.release.set()
    server.stop()


@pytest.fixture
async def engine(upstream: ScriptedUpstream) -> AsyncIterator[UpstreamEngine]:
    e = UpstreamEngine(
        "gw-model",
        upstream.base_url,  # type: ignore[attr-defined]
        upstream_model="up-model",
        api_key="sk-upstream",
        read_timeout_s=5,
    )
    await e.start()
    yield e
    await e.aclose()


def request(text: str = "Say hello", **sampling: object) -> InferenceRequest:
    return InferenceRequest(
        request_id="req-1",
        model="gw-model",
        messages=[ChatMessage("system", "Be brief."), ChatMessage("user", text)],
        sampling=SamplingParams(**sampling),  # type: ignore[arg-type]
    )


async def collect(engine: UpstreamEngine, req: InferenceRequest) -> list[Delta]:
    return [d async for d in engine.stream(engine.prepare(req))]


async def test_streams_deltas_in_order_with_the_upstreams_usage(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    upstream.handler = stream_reply(["Hel", "lo", " there"], usage=(42, 3))
    prepared = engine.prepare(request())
    assert prepared.prompt_tokens_estimated
    deltas = [d async for d in engine.stream(prepared)]
    *content, last = deltas
    assert "".join(d.text for d in content) == "Hello there"  # reads may merge chunks
    counts = [d.completion_tokens for d in content]
    assert counts == sorted(counts) and counts[-1] == 3
    assert (last.text, last.completion_tokens, last.finish_reason) == ("", 3, FinishReason.STOP)
    assert prepared.prompt_tokens == 42 and not prepared.prompt_tokens_estimated


async def test_chunks_of_one_read_become_one_delta(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        await start_sse(send)
        await body(send, event(chunk("a")) + event(chunk("b")) + event(chunk("c")))
        await asyncio.to_thread(upstream.release.wait, 10)  # the next read comes apart
        await body(send, event(chunk("d")) + event(chunk(finish="stop")) + DONE, more=False)

    upstream.handler = handler
    stream = engine.stream(engine.prepare(request()))
    first = await anext(stream)
    assert (first.text, first.completion_tokens) == ("abc", 3)
    upstream.release.set()
    rest = [d async for d in stream]
    assert [(d.text, d.completion_tokens) for d in rest] == [("d", 4), ("", 4)]


async def test_a_batch_line_says_it_is_preemptible(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    upstream.handler = stream_reply(["ok"], usage=(3, 1))
    await collect(engine, request())
    assert "x-modelgrid-priority" not in upstream.exchanges[-1].headers
    line = request()
    line.preemptible = True
    await collect(engine, line)
    assert upstream.exchanges[-1].headers["x-modelgrid-priority"] == "batch"


async def test_sends_a_streaming_request_with_usage_and_credentials(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    await collect(engine, request(max_tokens=7, temperature=0.0, stop=["\n"], seed=3))
    ex = upstream.exchanges[-1]
    assert ex.path == "/v1/chat/completions"
    assert ex.headers["authorization"] == "Bearer sk-upstream"
    assert ex.headers["x-request-id"] == "req-1"
    assert ex.body == {
        "model": "up-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        "max_tokens": 7,
        "temperature": 0.0,
        "stop": ["\n"],
        "seed": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_first_delta_arrives_before_the_upstream_finishes(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    """The upstream holds the rest of its stream until the test has seen the first delta:
    an engine that buffered would never see it (and time out)."""

    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        await start_sse(send)
        await body(send, event(chunk("", role="assistant")))
        await body(send, event(chunk("first")))
        await asyncio.to_thread(upstream.release.wait, 10)
        await body(send, event(chunk(" second")))
        await body(send, event(chunk(finish="stop")))
        await body(send, event(usage_chunk(5, 2)))
        await body(send, DONE, more=False)

    upstream.handler = handler
    stream = engine.stream(engine.prepare(request()))
    started = time.monotonic()
    first = await asyncio.wait_for(anext(stream), 5)
    assert first.text == "first" and time.monotonic() - started < 5
    assert not upstream.release.is_set()
    upstream.release.set()
    rest = [d async for d in stream]
    assert [d.text for d in rest] == [" second", ""]


async def test_without_usage_chunks_are_counted(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    upstream.handler = stream_reply(["a", "b", "c", "d"], usage=None, finish="length")
    prepared = engine.prepare(request("one two three"))
    estimate = prepared.prompt_tokens
    deltas = [d async for d in engine.stream(prepared)]
    assert deltas[-1].completion_tokens == 4
    assert deltas[-1].finish_reason is FinishReason.LENGTH
    assert prepared.prompt_tokens == estimate and prepared.prompt_tokens_estimated


async def test_cached_prompt_tokens_are_reported(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        await start_sse(send)
        await body(send, event(chunk("x")))
        await body(send, event(chunk(finish="stop")))
        await body(send, event(usage_chunk(100, 1, cached=64)))
        await body(send, DONE, more=False)

    upstream.handler = handler
    prepared = engine.prepare(request())
    [d async for d in engine.stream(prepared)]
    assert (prepared.prompt_tokens, prepared.cached_prompt_tokens) == (100, 64)


async def test_usage_is_split_over_choices(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        await start_sse(send)
        for i in (0, 1, 0, 1, 1):
            await body(send, event(chunk("w", index=i)))
        await body(send, event(chunk(finish="stop", index=0)))
        await body(send, event(chunk(finish="length", index=1)))
        await body(send, event(usage_chunk(9, 10)))
        await body(send, DONE, more=False)

    upstream.handler = handler
    req = request()
    req.n = 2
    deltas = await collect(engine, req)
    finals = {d.index: d for d in deltas if d.finish_reason is not None}
    assert finals[0].completion_tokens + finals[1].completion_tokens == 10
    assert finals[1].finish_reason is FinishReason.LENGTH
    assert upstream.exchanges[-1].body["n"] == 2


async def test_refused_connection_is_a_retryable_502() -> None:
    engine = UpstreamEngine("m", f"http://127.0.0.1:{free_port()}/v1", context_length=100)
    await engine.start()
    try:
        with pytest.raises(UpstreamError) as info:
            await collect(engine, request())
        assert info.value.status == 502 and info.value.retryable
        assert engine.queue_depth == 0 and engine.running == 0
        assert not (await engine.probe()).ok
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    ("status", "payload", "error", "code", "retryable"),
    [
        (500, {"error": {"message": "boom"}}, UpstreamError, "bad_gateway", False),
        (503, {"error": {"message": "overloaded"}}, UpstreamError, "bad_gateway", True),
        (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 64 tokens.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
            ContextLengthExceededError,
            "context_length_exceeded",
            False,
        ),
        (  # vLLM's older error shape, the code only in the message
            400,
            {"object": "error", "message": "maximum context length exceeded", "code": 400},
            ContextLengthExceededError,
            "context_length_exceeded",
            False,
        ),
        (
            400,
            {"error": {"message": "bad top_p", "param": "top_p", "code": None}},
            InvalidRequestError,
            "invalid_request",
            False,
        ),
        (
            404,
            {"error": {"message": "no model up-model"}},
            ModelNotFoundError,
            "model_not_found",
            False,
        ),
        (429, {"error": {"message": "slow down"}}, RateLimitError, "upstream_rate_limited", True),
        (401, {"error": {"message": "bad key"}}, UpstreamError, "upstream_auth", True),
    ],
)
async def test_upstream_statuses_map_to_modelgrid_errors(
    engine: UpstreamEngine,
    upstream: ScriptedUpstream,
    status: int,
    payload: dict[str, object],
    error: type[Exception],
    code: str,
    retryable: bool,
) -> None:
    upstream.handler = json_reply(status, payload, {"retry-after": "7"})
    with pytest.raises(error) as info:
        await collect(engine, request())
    exc = info.value
    assert exc.code == code and exc.retryable is retryable  # type: ignore[attr-defined]
    if status in (400, 404, 429):
        assert exc.status == status  # type: ignore[attr-defined]
        inner = payload.get("error", payload)
        assert exc.message == inner["message"]  # type: ignore[attr-defined, index]
    else:
        assert exc.status == 502  # type: ignore[attr-defined]
        assert "boom" not in exc.message  # type: ignore[attr-defined]
    if status == 429:
        assert exc.retry_after_s == 7  # type: ignore[attr-defined]


async def test_silent_upstream_times_out_with_504(upstream: ScriptedUpstream) -> None:
    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        await asyncio.to_thread(upstream.release.wait, 10)

    upstream.handler = handler
    engine = UpstreamEngine("m", upstream.base_url, read_timeout_s=0.3, context_length=100)  # type: ignore[attr-defined]
    await engine.start()
    try:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeoutError) as info:
            await collect(engine, request())
        assert info.value.status == 504 and not info.value.retryable
        assert time.monotonic() - started < 3
    finally:
        upstream.release.set()
        await engine.aclose()


async def test_upstream_dying_mid_stream_raises_after_the_first_deltas(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        await start_sse(send)
        await body(send, event(chunk("one")))
        await body(send, event(chunk(" two")))
        raise RuntimeError("the upstream process died")

    upstream.handler = handler
    got: list[str] = []
    with pytest.raises(UpstreamError) as info:
        async for d in engine.stream(engine.prepare(request())):
            got.append(d.text)
    assert "".join(got) == "one two"
    assert info.value.code == "upstream_disconnected" and not info.value.retryable


async def test_error_event_mid_stream_raises(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        await start_sse(send)
        await body(send, event(chunk("one")))
        await body(send, event({"error": {"message": "CUDA out of memory", "code": "oom"}}))
        await body(send, b"", more=False)

    upstream.handler = handler
    with pytest.raises(UpstreamError) as info:
        await collect(engine, request())
    assert "CUDA out of memory" in info.value.message and info.value.code == "oom"


async def test_stream_cut_without_finish_is_an_error(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        await start_sse(send)
        await body(send, event(chunk("one")), more=False)

    upstream.handler = handler
    with pytest.raises(UpstreamError) as info:
        await collect(engine, request())
    assert info.value.code == "upstream_incomplete"


async def test_consumer_going_away_closes_the_upstream_response(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    upstream.handler = stream_reply(["tok"] * 1000, delay_s=0.02)
    stream = engine.stream(engine.prepare(request()))
    await anext(stream)
    assert engine.running == 1
    await stream.aclose()
    assert engine.running == 0
    ex = upstream.exchanges[-1]
    assert await asyncio.to_thread(ex.disconnected.wait, 3)


async def test_connection_is_reused(engine: UpstreamEngine, upstream: ScriptedUpstream) -> None:
    for _ in range(3):
        await collect(engine, request())
    session = engine._client()
    assert session.connector is not None
    assert len(session.connector._conns) == 1  # type: ignore[attr-defined]


async def test_probe_and_context_discovery(upstream: ScriptedUpstream) -> None:
    upstream.model_entries = [{"id": "up-model", "object": "model", "max_model_len": 2048}]
    engine = UpstreamEngine("gw", upstream.base_url, upstream_model="up-model")  # type: ignore[attr-defined]
    await engine.start()
    try:
        assert engine.ready and engine.card.context_length == 2048
        probe = await engine.probe()
        assert probe.ok and probe.latency_ms > 0
        assert await engine.health()
    finally:
        await engine.aclose()


def test_prompt_estimate_is_documented_formula() -> None:
    req = request("x" * 41)  # "Be brief." is 9 characters
    assert estimate_prompt_tokens(req) == math.ceil(50 / 4) + 2 * 4 + 3


async def test_upstream_cookies_are_never_kept(upstream: ScriptedUpstream) -> None:
    """The pool is shared by every tenant: a cookie one answer sets must not go out with the
    next request."""
    reply = stream_reply(["x"])

    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        async def with_cookie(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"set-cookie", b"s=1")]}  # type: ignore[misc]
            await send(message)

        await reply(ex, with_cookie, receive)

    upstream.handler = handler
    by_name = UpstreamEngine("m", upstream.base_url.replace("127.0.0.1", "localhost"))  # type: ignore[attr-defined]
    await by_name.start()  # (aiohttp's default jar ignores cookies from IP addresses anyway)
    try:
        await collect(by_name, request())
        await collect(by_name, request())
    finally:
        await by_name.aclose()
    assert "cookie" not in upstream.exchanges[-1].headers


# --- non-streamed requests: one plain call, one JSON body -----------------------------------


def whole_request(**kw: object) -> InferenceRequest:
    req = request(**kw)
    req.stream = False
    return req


async def test_a_non_streamed_request_is_one_plain_call_read_as_one_delta(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    upstream.handler = json_reply(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello there"},
                    "finish_reason": "length",
                }
            ],
            "usage": {
                "prompt_tokens": 17,
                "completion_tokens": 5,
                "total_tokens": 22,
                "prompt_tokens_details": {"cached_tokens": 8},
            },
        },
    )
    prepared = engine.prepare(whole_request(max_tokens=5))
    deltas = [d async for d in engine.stream(prepared)]
    ex = upstream.exchanges[-1]
    assert "stream" not in ex.body and "stream_options" not in ex.body
    assert ex.body["max_tokens"] == 5
    assert ex.headers["accept"] == "application/json"
    assert [(d.index, d.text, d.completion_tokens, d.finish_reason) for d in deltas] == [
        (0, "Hello there", 1, None),
        (0, "", 5, FinishReason.LENGTH),
    ]
    assert (prepared.prompt_tokens, prepared.cached_prompt_tokens) == (17, 8)
    assert not prepared.prompt_tokens_estimated


async def test_a_non_streamed_answer_keeps_tool_calls_and_every_choice(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    upstream.handler = json_reply(
        200,
        {
            "choices": [
                {
                    "index": 1,
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                    "finish_reason": "tool_calls",
                },
                {"index": 0, "message": {"content": "ab"}, "finish_reason": "stop"},
            ]
        },
    )
    req = whole_request()
    req.n = 2
    deltas = [d async for d in engine.stream(engine.prepare(req))]
    tool = next(d for d in deltas if d.tool_calls)
    part = tool.tool_calls[0]
    assert (tool.index, part.index, part.id, part.name, part.arguments) == (
        1,
        0,
        "call_1",
        "f",
        '{"a":1}',
    )
    # no usage object: counted as ceil(characters / 4)
    finals = {d.index: (d.completion_tokens, d.finish_reason) for d in deltas if d.finish_reason}
    assert finals == {0: (1, FinishReason.STOP), 1: (2, FinishReason.TOOL_CALLS)}


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"choices": 3}',
        b'{"choices": [5]}',
        b'{"choices": [{"index": "0", "message": {"content": "x"}}]}',
        b'{"choices": [{"message": {"content": 5}}]}',
        b'{"choices": [{"message": {"tool_calls": [{"function": {"arguments": [1]}}]}}]}',
    ],
)
async def test_a_malformed_non_streamed_body_is_an_upstream_error(
    engine: UpstreamEngine, upstream: ScriptedUpstream, payload: bytes
) -> None:
    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await body(send, payload, more=False)

    upstream.handler = handler
    with pytest.raises(UpstreamError, match="malformed"):
        await collect(engine, whole_request())


async def test_a_non_streamed_request_still_reads_an_upstream_that_streams_anyway(
    engine: UpstreamEngine, upstream: ScriptedUpstream
) -> None:
    upstream.handler = stream_reply(["Hi", "!"], usage=(9, 2))
    deltas = await collect(engine, whole_request())
    assert "".join(d.text for d in deltas) == "Hi!"
    assert deltas[-1].completion_tokens == 2
