"""A client that gives up on a non-streamed answer frees the replica and is billed for the
tokens produced until then (status 499), on chat, completions and DashScope alike."""

from __future__ import annotations

import time

import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.support import ThreadServer, usage_rows

# 120 tokens, 6 s: the client leaves at 1.5 s (time for a loaded CI machine to have started
# the generation: a client that leaves before it starts cancels nothing in the engine)
SLOW = FakeEngine(reply=" ".join(["w"] * 120), token_delay_s=0.05, context_length=4096)
BODIES = {
    "/v1/chat/completions": {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/completions": {"model": "fake-model", "prompt": "hi", "max_tokens": 100},
    "/api/v1/services/aigc/text-generation/generation": {
        "model": "fake-model",
        "input": {"prompt": "hi"},
    },
}


@pytest.mark.parametrize("fake_engine", [SLOW])
@pytest.mark.parametrize("path", list(BODIES))
def test_non_streamed_generation_stops_when_the_client_leaves(
    fake_server: ThreadServer, fake_engine: FakeEngine, path: str
) -> None:
    cancelled_before = fake_engine.cancelled
    headers = {"Authorization": f"Bearer {fake_server.api_key}"}  # type: ignore[attr-defined]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{fake_server.base_url}{path}", json=BODIES[path], headers=headers, timeout=1.5)
    deadline = time.monotonic() + 2
    while fake_engine.cancelled == cancelled_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_engine.cancelled == cancelled_before + 1  # well before the 6 s generation ends
    [row] = usage_rows(fake_server, expect=1)
    assert (row["status"], row["finish_reason"]) == (499, "cancelled")
    assert 3 <= row["completion_tokens"] < 100  # stopped early (max_tokens 100, reply 120)
