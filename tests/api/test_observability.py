"""Observability over real servers: a gateway in front of a ``modelgrid engine`` worker app (or
a scripted upstream), the official openai SDK as the client.

- the GenAI spans cross gateway → replica: the worker's span is the gateway's span's child
  (``traceparent`` on the upstream HTTP call), each with the semantic conventions'
  attributes, and the measurements go to the OpenTelemetry SDK (in-memory exporters);
- OpenTelemetry off (the default): no trace header goes upstream, no instruments exist;
- ``/metrics`` exports vLLM's names with the call's exact figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from modelgrid.app import create_app
from modelgrid.engines.base import Engine
from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.upstream import UpstreamEngine
from modelgrid.serving.telemetry import GenAiTelemetry
from modelgrid.worker import create_worker_app
from tests.conftest import make_settings
from tests.otel_memory import MemoryTelemetry, memory_telemetry
from tests.scripted_upstream import AppThread, ScriptedUpstream, stream_reply
from tests.support import ThreadServer, create_key

TOKEN = "worker-secret"
MSG = [{"role": "user", "content": "What is the capital of France?"}]  # 6 words for FakeEngine


@dataclass
class Gateway(ThreadServer):
    """The gateway with ``genai`` passed to ``create_app``; ``stop`` first closes the upstream
    engines (their pools)."""

    genai: GenAiTelemetry | None = None

    def __post_init__(self) -> None:
        self.app = create_app(self.settings, self.engine_factory, genai=self.genai)
        self.served = AppThread(self.app, "/health/ready", self.port, lifespan="on")
        self.server, self.loop, self.thread = (
            self.served.server,
            self.served.loop,
            self.served.thread,
        )

    def stop(self) -> None:
        async def close() -> None:
            for e in self.built:
                await e.aclose()

        if self.thread.is_alive():
            self.call(close())
        super().stop()

    @property
    def built(self) -> list[Engine]:
        return list(self.engine_factory(self.settings))


def gateway(
    tmp_path: Path, database_url: str, engine: UpstreamEngine, genai: GenAiTelemetry | None
) -> Gateway:
    settings = make_settings(tmp_path, database_url)
    server = Gateway(settings, lambda _s: [engine], genai=genai)
    server.api_key = create_key(settings.database_url, name="t").plaintext
    server.start()
    return server


def chat(server: ThreadServer, *, stream: bool = False) -> httpx.Response:
    """One chat call; the raw response (headers say where it ran)."""
    with openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0
    ) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-up",
            messages=MSG,  # type: ignore[arg-type]
            stream=stream,
        )
        if stream:
            for _ in raw.parse():  # type: ignore[attr-defined]
                pass
        return raw.http_response


def scrape(server: ThreadServer) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = httpx.get(f"{server.base_url}/metrics").text
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


@pytest.fixture
def worker_telemetry() -> MemoryTelemetry:
    return memory_telemetry(SpanKind.SERVER)


@pytest.fixture
def worker(worker_telemetry: MemoryTelemetry) -> Iterator[AppThread]:
    engine = FakeEngine("fake-model", context_length=64)
    app = create_worker_app(lambda: engine, token=TOKEN, genai=worker_telemetry.genai)
    server = AppThread(app, "/health/ready").start()
    yield server
    server.stop()


def test_spans_cross_gateway_to_replica(
    tmp_path: Path, database_url: str, worker: AppThread, worker_telemetry: MemoryTelemetry
) -> None:
    gw = memory_telemetry(SpanKind.CLIENT)
    up = UpstreamEngine(
        "gpt-up", f"{worker.base_url}/v1", upstream_model="fake-model", api_key=TOKEN
    )
    server = gateway(tmp_path, database_url, up, gw.genai)
    try:
        response = chat(server)
        region = response.headers["x-modelgrid-region"]
        replica = response.headers["x-modelgrid-replica"]
        [outer] = gw.finished(1)
        [inner] = worker_telemetry.finished(1)
    finally:
        server.stop()
    assert (outer.name, outer.kind) == ("chat gpt-up", SpanKind.CLIENT)
    assert (inner.name, inner.kind) == ("chat fake-model", SpanKind.SERVER)
    # one trace: the replica's span is the gateway span's child
    assert inner.get_span_context().trace_id == outer.get_span_context().trace_id
    assert inner.parent is not None
    assert inner.parent.span_id == outer.get_span_context().span_id
    assert dict(outer.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "modelgrid",
        "gen_ai.request.model": "gpt-up",
        "gen_ai.response.model": "gpt-up",
        "gen_ai.usage.input_tokens": 6,
        "gen_ai.usage.output_tokens": 6,
        "modelgrid.region": region,
        "modelgrid.replica": replica,
    }
    assert inner.attributes is not None
    assert inner.attributes["gen_ai.request.model"] == "fake-model"
    assert inner.attributes["gen_ai.usage.input_tokens"] == 6
    assert inner.attributes["gen_ai.usage.output_tokens"] == 6
    p = gw.points()
    [duration] = p["gen_ai.client.operation.duration"]
    assert duration.count == 1
    assert dict(duration.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "modelgrid",
        "gen_ai.request.model": "gpt-up",
        "gen_ai.response.model": "gpt-up",
    }
    usage = {pt.attributes["gen_ai.token.type"]: pt for pt in p["gen_ai.client.token.usage"]}
    assert (usage["input"].sum, usage["output"].sum) == (6, 6)
    assert [pt.count for pt in p["gen_ai.server.time_to_first_token"]] == [1]
    assert [pt.count for pt in p["gen_ai.server.time_per_output_token"]] == [1]
    w = worker_telemetry.points()
    assert [pt.count for pt in w["gen_ai.client.operation.duration"]] == [1]


@pytest.mark.parametrize("on", [True, False])
def test_trace_context_goes_upstream_only_when_on(
    tmp_path: Path, database_url: str, on: bool
) -> None:
    app = ScriptedUpstream(stream_reply(["Par", "is."], usage=(11, 2)))
    upstream = AppThread(app).start()
    tel = memory_telemetry() if on else None
    up = UpstreamEngine("gpt-up", f"{upstream.base_url}/v1", context_length=4096)
    server = gateway(tmp_path, database_url, up, tel.genai if tel else None)
    try:
        chat(server, stream=True)
        sent = app.exchanges[-1].headers
        assert server.state.metrics.genai is (tel.genai if tel else None)
        if tel is None:
            assert "traceparent" not in sent and "tracestate" not in sent
            return
        [span] = tel.finished(1)
    finally:
        server.stop()
        upstream.stop()
    ctx = span.get_span_context()
    assert sent["traceparent"].startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    assert span.attributes is not None
    assert (
        span.attributes["gen_ai.usage.input_tokens"],
        span.attributes["gen_ai.usage.output_tokens"],
    ) == (11, 2)


def test_metrics_in_vllms_names_after_a_request(
    tmp_path: Path, database_url: str, worker: AppThread
) -> None:
    up = UpstreamEngine(
        "gpt-up", f"{worker.base_url}/v1", upstream_model="fake-model", api_key=TOKEN
    )
    server = gateway(tmp_path, database_url, up, None)
    try:
        response = chat(server, stream=True)
        chat(server)
        got = scrape(server)
        on_worker = scrape(worker)  # type: ignore[arg-type]
    finally:
        server.stop()
    lab = (
        ("model_name", "gpt-up"),
        ("region", response.headers["x-modelgrid-region"]),
        ("replica", response.headers["x-modelgrid-replica"]),
    )
    assert got["vllm:prompt_tokens_total"] == {lab: 12.0}
    assert got["vllm:generation_tokens_total"] == {lab: 12.0}
    assert got["vllm:prefix_cache_queries_total"] == {lab: 12.0}
    assert got["vllm:prefix_cache_hits_total"] == {lab: 0.0}
    assert got["vllm:time_to_first_token_seconds_count"] == {lab: 2.0}
    assert got["vllm:inter_token_latency_seconds_count"] == {lab: 2.0}
    assert got["vllm:e2e_request_latency_seconds_count"] == {lab: 2.0}
    assert got["vllm:request_queue_time_seconds_count"] == {lab: 2.0}
    assert got["vllm:num_requests_running"] == {(("model_name", "gpt-up"),): 0.0}
    assert (("model_name", "gpt-up"),) in got["vllm:num_requests_waiting"]
    assert got["modelgrid_prompt_tokens_total"] == {(("model", "gpt-up"),): 12.0}  # beside
    # the worker, behind the gateway, counts the same calls under its own model id
    wlab = (("model_name", "fake-model"), ("region", ""), ("replica", ""))
    assert on_worker["vllm:generation_tokens_total"] == {wlab: 12.0}
