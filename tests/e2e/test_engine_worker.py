"""``modelgrid engine`` as a real process, called with the openai SDK, alone and behind a
``modelgrid serve`` gateway configured through ``MODELGRID_UPSTREAMS__0__…``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.routing.workers import Worker, start_all
from tests.support import ProcessServer, usage_rows

pytestmark = pytest.mark.e2e
TOKEN = "e2e-worker-token"
MSG = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def fake_worker(tmp_path: Path) -> Iterator[Worker]:
    [w] = start_all([Worker("e2e", "w", token=TOKEN, token_delay_s=0)], tmp_path)
    yield w
    w.stop()


def test_fake_worker_answers_the_openai_sdk(fake_worker: Worker) -> None:
    c = fake_worker.client()
    assert [m.id for m in c.models.list()] == ["fake-model"]
    r = c.chat.completions.create(model="fake-model", messages=MSG)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Paris is the capital of France."
    chunks = list(
        c.chat.completions.create(
            model="fake-model",
            messages=MSG,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    ready = httpx.get(f"http://127.0.0.1:{fake_worker.port}/health/ready").json()
    assert (ready["region"], ready["queue_depth"], ready["running"]) == ("e2e", 0, 0)


def test_gateway_serves_the_worker_as_an_upstream(fake_worker: Worker, tmp_path: Path) -> None:
    gw = ProcessServer(
        env={
            "MODELGRID_DATA_DIR": str(tmp_path / "gw"),
            "MODELGRID_METERING__FLUSH_INTERVAL_S": "0.05",
            "MODELGRID_ENGINE__MODELS": "[]",
            "MODELGRID_ENGINE__EMBEDDING_MODELS": "[]",
            "MODELGRID_UPSTREAMS__0__MODEL": "gpt-fake",
            "MODELGRID_UPSTREAMS__0__BASE_URL": fake_worker.base_url,
            "MODELGRID_UPSTREAMS__0__UPSTREAM_MODEL": "fake-model",
            "MODELGRID_UPSTREAMS__0__API_KEY": TOKEN,
        },
        log_path=tmp_path / "gw.log",
    ).start()
    try:
        c = openai.OpenAI(
            base_url=f"{gw.base_url}/v1", api_key=gw.printed_key("API key"), max_retries=0
        )
        fake_worker.clients.append(c)
        assert "gpt-fake" in [m.id for m in c.models.list()]
        r = c.chat.completions.create(model="gpt-fake", messages=MSG)  # type: ignore[arg-type]
        assert r.choices[0].message.content == "Paris is the capital of France."
        assert r.usage is not None and r.usage.prompt_tokens == 6  # the worker's count
        [row] = usage_rows(tmp_path / "gw" / "modelgrid.db", expect=1)
        assert (row["model"], row["prompt_tokens"], row["completion_tokens"]) == (
            "gpt-fake",
            6,
            6,
        )
    finally:
        gw.stop()


@pytest.mark.model
def test_model_worker_answers_the_openai_sdk(tmp_path: Path) -> None:
    model = "qwen2.5-coder-0.5b-instruct"
    [w] = start_all([Worker("local", "w", model, engine="llamacpp", token=TOKEN)], tmp_path, 240)
    try:
        c = w.client()
        question = [
            {"role": "user", "content": "What is the capital of France? Answer in one sentence."}
        ]
        r = c.chat.completions.create(
            model=model,
            messages=question,  # type: ignore[arg-type]
            max_tokens=30,
            temperature=0,
        )
        assert "Paris" in (r.choices[0].message.content or "")
        assert r.usage is not None and r.usage.prompt_tokens > 10
        chunks = list(
            c.chat.completions.create(
                model=model,
                messages=question,  # type: ignore[arg-type]
                max_tokens=30,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert "Paris" in text
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    finally:
        w.stop()
