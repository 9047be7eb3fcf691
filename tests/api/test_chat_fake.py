"""The OpenAI chat surface over a real uvicorn server and the scripted FakeEngine."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator

import httpx
import openai
import pytest

from modelgrid.core.types import Delta
from modelgrid.engines.base import PreparedRequest
from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.support import SEALER, ThreadServer, usage_rows

MODEL = "fake-model"
MSG = [{"role": "user", "content": "What is the capital of France?"}]  # 6 "tokens"


def client(server: ThreadServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0)  # type: ignore[attr-defined]


def auth(server: ThreadServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"}  # type: ignore[attr-defined]


def test_models_list_and_get(fake_server: ThreadServer) -> None:
    c = client(fake_server)
    assert [m.id for m in c.models.list()] == [MODEL]
    assert c.models.retrieve(MODEL).owned_by == "modelgrid"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("nope")


def test_non_streaming_completion_and_usage(fake_server: ThreadServer) -> None:
    r = client(fake_server).chat.completions.create(model=MODEL, messages=MSG)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Paris is the capital of France."
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (6, 6, 12)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    rows = usage_rows(fake_server, expect=1)
    assert len(rows) == 1
    row = rows[0]
    assert (row["model"], row["prompt_tokens"], row["completion_tokens"], row["status"]) == (
        MODEL,
        6,
        6,
        200,
    )
    assert row["finish_reason"] == "stop"
    assert row["total_ms"] >= 0 and row["ttft_ms"] is not None


class SlowToStop(FakeEngine):
    """Ends its stream 0.2 s after the last token (as llama-cpp-python evaluates the last
    token before it stops)."""

    async def stream(self, prepared: PreparedRequest) -> AsyncGenerator[Delta, None]:
        async for delta in super().stream(prepared):
            if delta.finish_reason is not None:
                await asyncio.sleep(0.2)
            yield delta


def test_the_ledger_times_the_first_and_last_token_apart_from_the_end(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(SlowToStop(token_delay_s=0.05))
    stream = client(server).chat.completions.create(model=MODEL, messages=MSG, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
        "Paris is the capital of France."
    )
    row = usage_rows(server, expect=1)[0]
    # 6 tokens 50 ms apart: 5 gaps from the first to the last; then 200 ms to the end
    assert 250 <= row["last_token_ms"] - row["ttft_ms"] < 400
    assert row["total_ms"] - row["last_token_ms"] >= 200


def _normalise(body: bytes) -> str:
    text = body.decode()
    text = re.sub(r'"id":"chatcmpl-[0-9a-f]{24}"', '"id":"ID"', text)
    return re.sub(r'"created":\d+', '"created":0', text)


def test_stream_wire_bytes_golden(fake_server: ThreadServer) -> None:
    body = {
        "model": MODEL,
        "messages": MSG,
        "stream": True,
        "max_tokens": 3,
        "stream_options": {"include_usage": True},
    }
    r = httpx.post(
        f"{fake_server.base_url}/v1/chat/completions", json=body, headers=auth(fake_server)
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    head = '"id":"ID","object":"chat.completion.chunk","created":0,"model":"fake-model","system_fingerprint":null'

    def chunk(delta: str, finish: str = "null") -> str:
        return (
            f'data: {{{head},"choices":[{{"index":0,"delta":{delta},"logprobs":null,'
            f'"finish_reason":{finish}}}],"usage":null}}\n\n'
        )

    expected = (
        chunk('{"role":"assistant","content":""}')
        + chunk('{"content":"Paris"}')
        + chunk('{"content":" is"}')
        + chunk('{"content":" the"}')
        + chunk("{}", '"length"')
        + f'data: {{{head},"choices":[],"usage":{{"prompt_tokens":6,"completion_tokens":3,"total_tokens":9}}}}\n\n'
        + "data: [DONE]\n\n"
    )
    assert _normalise(r.content) == expected


def test_stream_with_sdk_and_stop_spanning_chunks(fake_server: ThreadServer) -> None:
    stream = client(fake_server).chat.completions.create(
        model=MODEL,
        messages=MSG,
        stream=True,
        stop=["capital of"],  # type: ignore[arg-type]
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris is the "
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])


def test_n_choices(fake_server: ThreadServer) -> None:
    r = client(fake_server).chat.completions.create(model=MODEL, messages=MSG, n=2, max_tokens=2)  # type: ignore[arg-type]
    assert [c.message.content for c in r.choices] == ["Paris is", "Paris is"]
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage.completion_tokens == 4
    assert {c.finish_reason for c in r.choices} == {"length"}


def test_content_as_text_parts(fake_server: ThreadServer) -> None:
    msgs = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": " it?"}],
        }
    ]
    r = client(fake_server).chat.completions.create(model=MODEL, messages=msgs)  # type: ignore[arg-type]
    assert r.usage.prompt_tokens == 3


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer sk-wrong"}, "invalid_api_key"),
        ({"Authorization": "Bearer mg-0123456789ab_" + "x" * 43}, "invalid_api_key"),
        ({"Authorization": "Basic abc"}, "missing_api_key"),
    ],
)
def test_auth_errors(fake_server: ThreadServer, headers: dict[str, str], code: str) -> None:
    r = httpx.post(
        f"{fake_server.base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": MSG},
        headers=headers,
    )
    assert r.status_code == 401
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["code"]) == ("authentication_error", code)


def test_revoked_key_is_refused_immediately(fake_server: ThreadServer) -> None:
    import asyncio

    from modelgrid.control import ControlPlane, FileTopology, Hooks
    from modelgrid.routing.topology import default_topology
    from modelgrid.storage import db
    from modelgrid.tenancy.authcache import bump_epoch

    c = client(fake_server)
    c.models.list()
    url = fake_server.settings.database_url
    key_id = fake_server.api_key.split("_")[0]  # type: ignore[attr-defined]

    async def revoke() -> None:  # as the CLI does: the control plane, bumping the epoch file
        engine = db.create_engine(url)
        epoch = fake_server.settings.auth_epoch_path
        plane = ControlPlane(
            db.sessionmaker(engine),
            FileTopology(fake_server.settings.topology_path, default_topology(), ()),
            hooks=Hooks(principals_changed=lambda: bump_epoch(epoch)),
            sealer=SEALER,
        )
        await plane.keys.revoke(key_id, actor="cli:test")
        await engine.dispose()

    asyncio.run(revoke())
    with pytest.raises(openai.AuthenticationError) as exc:
        c.models.list()
    assert exc.value.body["code"] == "revoked_api_key"  # type: ignore[index]


def post(
    server: ThreadServer, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    payload = {"content": body} if isinstance(body, (bytes, str)) else {"json": body}
    return httpx.post(
        f"{server.base_url}/v1/chat/completions",
        headers={**auth(server), **(headers or {})},
        **payload,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        (b"{not json", 400, None, "invalid_request"),
        ({"messages": MSG}, 400, "model", "invalid_request"),
        ({"model": MODEL}, 400, "messages", "invalid_request"),
        ({"model": MODEL, "messages": []}, 400, "messages", "invalid_request"),
        (
            {"model": MODEL, "messages": MSG, "temperature": 5},
            400,
            "temperature",
            "invalid_request",
        ),
        ({"model": MODEL, "messages": MSG, "max_tokens": 0}, 400, "max_tokens", "invalid_request"),
        ({"model": MODEL, "messages": MSG, "n": 0}, 400, "n", "invalid_request"),
        (
            {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]},
            400,
            "messages[0].role",
            "invalid_request",
        ),
        (
            {"model": MODEL, "messages": MSG, "stop": ["a", "b", "c", "d", "e"]},
            400,
            "stop",
            "invalid_request",
        ),
        (
            {"model": MODEL, "messages": MSG, "max_tokens": 100},
            400,
            "messages",
            "context_length_exceeded",
        ),
        ({"model": "gpt-9", "messages": MSG}, 404, "model", "model_not_found"),
        (
            {
                "model": MODEL,
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ],
            },
            400,
            "messages[0].content",
            "unsupported_parameter",
        ),
        (
            {"model": MODEL, "messages": MSG, "logit_bias": {"1": 5}},
            400,
            "logit_bias",
            "unsupported_parameter",
        ),
    ],
)
def test_bad_requests_get_openai_errors(
    fake_server: ThreadServer, body: object, status: int, param: str | None, code: str
) -> None:
    for stream in (False, True):
        if isinstance(body, dict) and stream:
            body = {**body, "stream": True}
        r = post(fake_server, body)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        err = r.json()["error"]
        assert (err["param"], err["code"]) == (param, code)
        assert "Traceback" not in r.text


def test_unknown_route_and_method_are_openai_shaped(fake_server: ThreadServer) -> None:
    r = httpx.get(f"{fake_server.base_url}/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(f"{fake_server.base_url}/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_request_id_echoed_or_generated(fake_server: ThreadServer) -> None:
    for _ in range(2):  # a reused client id must not merge two requests' usage
        r = post(
            fake_server, {"model": MODEL, "messages": MSG}, headers={"x-request-id": "abc-123"}
        )
        assert r.headers["x-request-id"] == "abc-123"
    r2 = httpx.get(f"{fake_server.base_url}/health/live")
    assert re.fullmatch(r"[0-9a-f]{32}", r2.headers["x-request-id"])
    rows = usage_rows(fake_server, expect=2)
    assert [r["client_request_id"] for r in rows] == ["abc-123", "abc-123"]
    assert len({r["request_id"] for r in rows}) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", str(r["request_id"])) for r in rows)


def test_health_and_metrics(fake_server: ThreadServer) -> None:
    assert httpx.get(f"{fake_server.base_url}/health/live").json() == {"status": "ok"}
    assert httpx.get(f"{fake_server.base_url}/health/ready").json()["status"] == "ready"
    client(fake_server).chat.completions.create(model=MODEL, messages=MSG)  # type: ignore[arg-type]
    text = httpx.get(f"{fake_server.base_url}/metrics").text
    assert 'modelgrid_http_requests_total{route="/v1/chat/completions",status="200"} 1.0' in text
    assert 'modelgrid_prompt_tokens_total{model="fake-model"} 6.0' in text
    assert 'modelgrid_completion_tokens_total{model="fake-model"} 6.0' in text
    assert 'modelgrid_time_to_first_token_seconds_count{model="fake-model"} 1.0' in text
    assert 'modelgrid_e2e_request_latency_seconds_count{model="fake-model"} 1.0' in text
    assert 'modelgrid_queue_depth{model="fake-model"} 0.0' in text


@pytest.mark.parametrize("fake_engine", [FakeEngine(fail_after_tokens=2)])
def test_mid_stream_failure_ends_with_error_event(fake_server: ThreadServer) -> None:
    r = post(fake_server, {"model": MODEL, "messages": MSG, "stream": True})
    events = [json.loads(line[6:]) for line in r.text.split("\n\n") if line.startswith("data: {")]
    assert events[-1]["error"]["type"] == "server_error"
    assert "[DONE]" not in r.text
    row = usage_rows(fake_server, expect=1)[0]
    assert (row["completion_tokens"], row["status"], row["finish_reason"]) == (2, 500, "error")


@pytest.mark.parametrize(
    "fake_engine", [FakeEngine(reply=" ".join(["w"] * 40), token_delay_s=0.05)]
)
def test_client_disconnect_stops_generation_and_bills_tokens_so_far(
    fake_server: ThreadServer, fake_engine: FakeEngine
) -> None:
    with httpx.stream(
        "POST",
        f"{fake_server.base_url}/v1/chat/completions",
        headers=auth(fake_server),
        json={"model": MODEL, "messages": MSG, "stream": True},
    ) as r:
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                seen += 1
            if seen == 3:
                break
    row = usage_rows(fake_server, expect=1)[0]
    assert row["status"] == 499 and row["finish_reason"] == "cancelled"
    assert 3 <= row["completion_tokens"] < 10
    assert fake_engine.cancelled == 1
