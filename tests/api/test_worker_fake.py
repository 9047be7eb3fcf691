"""The ``modelgrid engine`` worker app over a real uvicorn server, with the scripted engine."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from modelgrid.engines.fake import FakeEngine
from modelgrid.worker import create_worker_app
from tests.scripted_upstream import AppThread

TOKEN = "worker-secret"
MSG = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def worker_engine() -> FakeEngine:
    return FakeEngine("fake-model", context_length=64, token_delay_s=0.0)


@pytest.fixture
def worker(worker_engine: FakeEngine) -> Iterator[AppThread]:
    app = create_worker_app(lambda: worker_engine, region="eu-test", token=TOKEN)
    server = AppThread(app, ready_path="/health/ready").start()
    yield server
    server.stop()


_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """SDK clients hold keep-alive sockets: closed after each test, not left to the GC."""
    yield
    while _clients:
        _clients.pop().close()


def client(server: AppThread, token: str = TOKEN) -> openai.OpenAI:
    c = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=token, max_retries=0)
    _clients.append(c)
    return c


def test_models_and_chat_with_the_openai_sdk(worker: AppThread) -> None:
    c = client(worker)
    assert [(m.id, m.owned_by) for m in c.models.list()] == [("fake-model", "modelgrid")]
    r = c.chat.completions.create(model="fake-model", messages=MSG)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Paris is the capital of France."
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (6, 6)  # type: ignore[union-attr]


def test_streaming_with_usage(worker: AppThread) -> None:
    stream = client(worker).chat.completions.create(
        model="fake-model",
        messages=MSG,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Paris is the capital of France."
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6  # type: ignore[union-attr]


def test_token_is_required(worker: AppThread) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(worker, "wrong").chat.completions.create(model="fake-model", messages=MSG)  # type: ignore[arg-type]
    assert httpx.get(f"{worker.base_url}/v1/models").status_code == 401
    assert httpx.get(f"{worker.base_url}/health/ready").status_code == 200  # probes need none


def test_errors_keep_the_openai_envelope(worker: AppThread) -> None:
    with pytest.raises(openai.NotFoundError):
        client(worker).chat.completions.create(model="nope", messages=MSG)  # type: ignore[arg-type]
    long = [{"role": "user", "content": "word " * 100}]
    with pytest.raises(openai.BadRequestError) as info:
        client(worker).chat.completions.create(model="fake-model", messages=long)  # type: ignore[arg-type]
    assert info.value.code == "context_length_exceeded"


def test_ready_and_metrics_show_the_load(worker: AppThread, worker_engine: FakeEngine) -> None:
    worker_engine.token_delay_s = 0.05
    started = threading.Event()

    def slow_stream() -> None:
        s = client(worker).chat.completions.create(model="fake-model", messages=MSG, stream=True)  # type: ignore[arg-type]
        for _ in s:
            started.set()

    t = threading.Thread(target=slow_stream)
    t.start()
    assert started.wait(5)
    ready = httpx.get(f"{worker.base_url}/health/ready").json()
    assert ready == {
        "status": "ready",
        "model": "fake-model",
        "region": "eu-test",
        "queue_depth": 0,
        "running": 1,
    }
    metrics = httpx.get(f"{worker.base_url}/metrics").text
    assert 'modelgrid_requests_running{model="fake-model"} 1.0' in metrics
    assert 'modelgrid_queue_depth{model="fake-model"} 0.0' in metrics
    t.join(10)
    assert httpx.get(f"{worker.base_url}/health/ready").json()["running"] == 0


SLOW = FakeEngine("fake-model", reply=" ".join(["w"] * 60), token_delay_s=0.05, context_length=4096)


@pytest.mark.parametrize("worker_engine", [SLOW])
def test_a_non_streamed_generation_stops_when_the_caller_leaves(
    worker: AppThread, worker_engine: FakeEngine
) -> None:
    """A gateway calls workers without streaming for non-streamed requests; when its client
    leaves, it closes the connection, and the worker must stop generating at once."""
    before = worker_engine.cancelled
    body = {"model": "fake-model", "messages": MSG, "max_tokens": 60}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{worker.base_url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=0.3,
        )
    deadline = time.monotonic() + 2
    while worker_engine.cancelled == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker_engine.cancelled == before + 1


def test_text_completions_json_and_stream(worker: AppThread) -> None:
    c = client(worker)
    r = c.completions.create(model="fake-model", prompt="The capital of France", max_tokens=3)
    assert r.choices[0].text == "Paris is the"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (4, 3)  # type: ignore[union-attr]
    chunks = list(
        c.completions.create(
            model="fake-model",
            prompt="The capital of France",
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == "Paris is the"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
