"""The console's playground in Debian's Chromium against the real packaged Qwen model behind
a real ``modelgrid serve`` process: the answer streamed into the page, metered once to the
signed-in key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.console.conftest import ARTIFACTS, INSTALL_HINT, BrowserThread, chromium_path
from tests.databases import in_ci
from tests.support import ProcessServer, usage_rows_matching

pytestmark = [pytest.mark.model, pytest.mark.e2e, pytest.mark.timeout(240)]
MODEL = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def chromium() -> Iterator[BrowserThread]:
    path = chromium_path()
    if path is None:
        if in_ci():
            pytest.fail(f"chromium is not installed: {INSTALL_HINT}")
        pytest.skip(f"chromium is not installed: {INSTALL_HINT}")
    driven = BrowserThread(path)
    try:
        yield driven
    finally:
        driven.close()


def test_playground_streams_the_real_model(
    chromium: BrowserThread, model_server: ProcessServer
) -> None:
    base = model_server.base_url
    key: str = model_server.api_key  # type: ignore[attr-defined]

    def steps(b: Any) -> tuple[str, str]:
        page = b.new_context().new_page()
        page.goto(f"{base}/console/login")
        page.fill("#key", key)
        with page.expect_navigation():
            page.click("button[type=submit]")
        page.goto(f"{base}/console/playground")
        page.select_option("#p-model", MODEL)
        page.fill("#p-temperature", "0")
        page.fill("#p-max-tokens", "30")
        page.fill("#p-prompt", "What is the capital of France? Answer in one short sentence.")
        page.click("#p-send")
        page.wait_for_function(
            "document.querySelector('#chat-status').dataset.requestId", timeout=120_000
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "real-model-playground.png"), full_page=True)
        answer = page.inner_text(".turn.assistant .content")
        return answer, str(page.get_attribute("#chat-status", "data-request-id"))

    answer, request_id = chromium.run(steps)
    assert "Paris" in answer
    rows = usage_rows_matching(model_server.db_path, request_id=request_id)  # type: ignore[attr-defined]
    assert len(rows) == 1
    assert rows[0]["model"] == MODEL and rows[0]["completion_tokens"] > 0
    assert rows[0]["endpoint"] == "chat.completions" and rows[0]["status"] == 200
