"""SIGTERM to a real ``modelgrid serve`` while streams outlast its 10 s graceful shutdown: each
stream ends with its protocol's error event (OpenAI chat: an ``error`` data object and no
``[DONE]``; Anthropic: ``event: error``; DashScope: ``event:error`` with ``HTTP_STATUS/503``),
each request's usage is recorded once, as 503 with the tokens it had streamed, the log says
one line a stream and holds no traceback, and the process ends by the signal.

The model is an upstream: a ``modelgrid engine`` of the scripted engine that sends a word every
4 s (six words: 24 s a reply), so at the deadline (~10 s after the signal, sent once every
stream has its first word) each stream has three words."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.databases import migrated_sqlite
from tests.routing.workers import Worker, start_all
from tests.support import ProcessServer, create_key, usage_rows_matching

TOKEN = "shutdown-upstream-token"
WORD_DELAY_S = 4.0
MESSAGES = [{"role": "user", "content": "hi"}]
CALLS = {
    "openai": ("/v1/chat/completions", {"stream": True, "messages": MESSAGES}, {}),
    "anthropic": ("/v1/messages", {"stream": True, "max_tokens": 20, "messages": MESSAGES}, {}),
    "dashscope": (
        "/api/v1/services/aigc/text-generation/generation",
        {"input": {"messages": MESSAGES}, "parameters": {"incremental_output": True}},
        {"X-DashScope-SSE": "enable"},
    ),
}


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Worker]:
    [w] = start_all([Worker("local", "up", token=TOKEN, token_delay_s=WORD_DELAY_S)], tmp_path)
    try:
        yield w
    finally:
        w.stop()


class Stream(threading.Thread):
    """One streamed call, its events as ``(event name or None, data)`` in order."""

    def __init__(self, base_url: str, key: str, protocol: str) -> None:
        super().__init__(daemon=True)
        self.url = base_url + CALLS[protocol][0]
        self.body = {"model": "gpt-fake", **CALLS[protocol][1]}
        self.headers = {"Authorization": f"Bearer {key}", **CALLS[protocol][2]}
        self.events: list[tuple[str | None, str]] = []
        self.lines: list[str] = []
        self.first = threading.Event()
        self.status = 0

    def run(self) -> None:
        name: str | None = None
        with httpx.stream("POST", self.url, json=self.body, headers=self.headers, timeout=60) as r:
            self.status = r.status_code
            for line in r.iter_lines():
                self.lines.append(line)
                if line.startswith("event:"):
                    name = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    self.events.append((name, line.removeprefix("data:").strip()))
                    name = None
                    if self.words() >= 1:
                        self.first.set()

    def words(self) -> int:
        """The content pieces (tokens: one word each) received."""
        n = 0
        for name, data in self.events:
            if data == "[DONE]":
                continue
            obj = json.loads(data)
            n += bool(
                name == "content_block_delta"  # Anthropic
                or (
                    name is None
                    and obj.get("choices")
                    and obj["choices"][0]["delta"].get("content")
                )
                or (name == "result" and obj["output"]["text"])  # DashScope, incremental
            )
        return n


@pytest.mark.timeout(120)
def test_sigterm_ends_long_streams_with_their_protocols_error_event(
    tmp_path: Path, upstream: Worker
) -> None:
    db_url = migrated_sqlite(tmp_path / "mg.db")
    key = create_key(db_url, name="tenant")
    gw = ProcessServer(
        env={
            "MODELGRID_DATA_DIR": str(tmp_path / "gw"),
            "MODELGRID_DATABASE__URL": db_url,
            "MODELGRID_BOOTSTRAP_KEYS": "false",
            "MODELGRID_SERVER__LOG_LEVEL": "warning",
            "MODELGRID_ENGINE__MODELS": "[]",
            "MODELGRID_ENGINE__EMBEDDING_MODELS": "[]",
            "MODELGRID_UPSTREAMS__0__MODEL": "gpt-fake",
            "MODELGRID_UPSTREAMS__0__BASE_URL": upstream.base_url,
            "MODELGRID_UPSTREAMS__0__UPSTREAM_MODEL": "fake-model",
            "MODELGRID_UPSTREAMS__0__API_KEY": TOKEN,
        },
        log_path=tmp_path / "gw.log",
    )
    gw.start(120)
    streams = {p: Stream(gw.base_url, key.plaintext, p) for p in CALLS}
    try:
        for s in streams.values():
            s.start()
        for p, s in streams.items():
            assert s.first.wait(30), (p, s.status, s.lines)
        gw.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        for s in streams.values():
            s.join(30)
        assert gw.proc.wait(30) == -signal.SIGTERM  # uvicorn re-raises the signal it handled
        took_s = time.monotonic() - signalled
    finally:
        gw.stop()
    assert 10 <= took_s < 14, took_s  # the grace, then the cut at once

    openai, anthropic, dashscope = (streams[p] for p in CALLS)
    for s in streams.values():
        assert s.status == 200 and not s.is_alive()
        assert s.words() == 3, s.events  # words at 4, 8 and 12 s; the deadline ~13 s
    assert json.loads(openai.events[-1][1]) == {
        "error": {
            "message": "The server is shutting down and ended this response before it was "
            "complete; retry the request.",
            "type": "service_unavailable",
            "param": None,
            "code": "server_shutting_down",
        }
    }
    assert "[DONE]" not in [d for _, d in openai.events]
    name, data = anthropic.events[-1]
    assert name == "error"
    body = json.loads(data)
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
    assert body["error"]["message"].startswith("The server is shutting down")
    name, data = dashscope.events[-1]
    assert name == "error"
    assert json.loads(data)["code"] == "ModelUnavailable"
    at = dashscope.lines.index("event:error")
    assert dashscope.lines[at + 1 : at + 3] == [":HTTP_STATUS/503", f"data:{data}"]
    raw = (tmp_path / "gw.log").read_text()

    rows = usage_rows_matching(db_url, api_key_id=key.key_id)
    deadline = time.monotonic() + 5
    while len(rows) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = usage_rows_matching(db_url, api_key_id=key.key_id)
    assert sorted((r["endpoint"], r["status"], r["finish_reason"]) for r in rows) == sorted(
        (e, 503, "error") for e in ("chat.completions", "messages", "dashscope.generation")
    ), rows
    assert [r["completion_tokens"] for r in rows] == [3, 3, 3]

    cut = [ln for ln in raw.splitlines() if "server shutdown cut the stream" in ln]
    assert len(cut) == 3, raw
    assert "Traceback" not in raw and "CancelledError" not in raw, raw
