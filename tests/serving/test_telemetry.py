"""The GenAI span and measurements of one call (OpenTelemetry SDK, in-memory exporters)."""

from __future__ import annotations

import time

from opentelemetry.trace import SpanKind, StatusCode

from modelgrid.serving.telemetry import DURATION_BUCKETS_S, TOKEN_BUCKETS
from tests.otel_memory import memory_telemetry


def test_a_chat_call_span_and_metrics() -> None:
    t = memory_telemetry()
    started = time.perf_counter() - 0.5  # arrived half a second ago
    call = t.genai.start("chat.completions", "qwen", started)
    assert call.headers["traceparent"].startswith("00-")
    t.genai.finish(
        call,
        status=200,
        response_model="qwen",
        prompt_tokens=12,
        completion_tokens=5,
        ttft_s=0.1,
        total_s=0.5,
        region="eu",
        replica="eu-1",
    )
    [span] = t.finished(1)
    assert span.name == "chat qwen"
    assert span.kind is SpanKind.CLIENT
    assert span.end_time is not None and span.start_time is not None
    assert 0.45 < (span.end_time - span.start_time) / 1e9 < 2  # from the request's arrival
    ctx = span.get_span_context()
    assert call.headers["traceparent"].startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "modelgrid",
        "gen_ai.request.model": "qwen",
        "gen_ai.response.model": "qwen",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 5,
        "modelgrid.region": "eu",
        "modelgrid.replica": "eu-1",
    }
    p = t.points()
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "modelgrid",
        "gen_ai.request.model": "qwen",
        "gen_ai.response.model": "qwen",
    }
    [duration] = p["gen_ai.client.operation.duration"]
    assert (duration.count, duration.sum, dict(duration.attributes)) == (1, 0.5, base)
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS_S
    usage = {pt.attributes["gen_ai.token.type"]: pt for pt in p["gen_ai.client.token.usage"]}
    assert (usage["input"].count, usage["input"].sum) == (1, 12)
    assert (usage["output"].count, usage["output"].sum) == (1, 5)
    assert tuple(usage["input"].explicit_bounds) == tuple(float(b) for b in TOKEN_BUCKETS)
    [ttft] = p["gen_ai.server.time_to_first_token"]
    assert (ttft.count, ttft.sum) == (1, 0.1)
    [tpot] = p["gen_ai.server.time_per_output_token"]
    assert tpot.count == 1 and abs(tpot.sum - 0.1) < 1e-9  # (0.5 - 0.1) / (5 - 1)


def test_a_failed_call_carries_error_type_and_no_server_timings() -> None:
    t = memory_telemetry(SpanKind.SERVER)
    call = t.genai.start("completions", "qwen", time.perf_counter())
    t.genai.finish(
        call,
        status=502,
        response_model="qwen",
        prompt_tokens=3,
        completion_tokens=0,
        ttft_s=None,
        total_s=0.01,
        region=None,
        replica=None,
    )
    [span] = t.finished(1)
    assert span.name == "text_completion qwen"
    assert span.kind is SpanKind.SERVER
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "502"
    p = t.points()
    [duration] = p["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == "502"
    assert "gen_ai.server.time_to_first_token" not in p
    assert "gen_ai.server.time_per_output_token" not in p


def test_a_caller_trace_context_makes_the_span_its_child() -> None:
    t = memory_telemetry(SpanKind.SERVER)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    call = t.genai.start("embeddings", "minilm", time.perf_counter(), {"traceparent": parent})
    t.genai.finish(
        call,
        status=200,
        response_model="minilm",
        prompt_tokens=4,
        completion_tokens=0,
        ttft_s=None,
        total_s=0.001,
        region=None,
        replica=None,
    )
    [span] = t.finished(1)
    assert span.name == "embeddings minilm"
    assert span.get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331
