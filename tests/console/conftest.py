"""Fixtures of the console's browser tests: Debian's Chromium driven by Playwright.

The browser is the system's ``chromium`` (Debian's package), launched through
``executable_path``: Playwright's own browser download (``playwright install``) is never used.
Where ``chromium`` is missing the browser tests skip with how to install it, except under
``CI=true``, where they fail (CI never skips silently). ``scripts/test.sh`` installs it when
it runs as root. Screenshots go to ``test-artifacts/console/`` (git-ignored).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.databases import in_ci

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "console"
SHOT_TRIES = 3
INSTALL_HINT = (
    "the console's browser tests need Debian's Chromium: `apt-get install -y chromium` as root "
    "(scripts/test.sh does it when run as root)"
)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserThread:
    """A headless Chromium driven from a thread of its own: Playwright's sync API runs an
    event loop in the thread that uses it, where the tests' own helpers (``create_key``,
    migrations: ``asyncio.run``) could not run. ``run(fn)`` calls ``fn(browser)`` there and
    returns its result (or raises what it raised)."""

    def __init__(self, executable: str) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="playwright")
        self._pw: Any = None
        self.browser: Any = None
        self._pool.submit(self._start, executable).result(timeout=60)

    def _start(self, executable: str) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )

    def run(self, fn: Callable[[Any], T]) -> T:
        return self._pool.submit(fn, self.browser).result(timeout=120)

    def close(self) -> None:
        def stop() -> None:
            try:
                if self.browser is not None:
                    self.browser.close()
            finally:
                if self._pw is not None:
                    self._pw.stop()

        self._pool.submit(stop).result(timeout=60)
        self._pool.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserThread]:
    """Debian's headless Chromium, one per test module (``BrowserThread``)."""
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


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Any:
    """``shots(page, name)`` saves a full-page screenshot as
    ``test-artifacts/console/<test>-<name>.png``.

    Headless Chromium now and then answers ``Page.captureScreenshot`` with "Unable to capture
    screenshot" when the machine is busy (CI once failed a console test on it, the page itself
    right): that answer is tried again, up to ``SHOT_TRIES`` times, a frame apart."""
    from playwright.sync_api import Error as PlaywrightError

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    test = request.node.name.removeprefix("test_")

    def shoot(page: Any, name: str) -> Path:
        path = ARTIFACTS / f"{test}-{name}.png"
        for attempt in range(1, SHOT_TRIES):
            try:
                page.screenshot(path=str(path), full_page=True)
                return path
            except PlaywrightError as exc:
                if "Unable to capture screenshot" not in str(exc):
                    raise
                page.wait_for_timeout(250 * attempt)
        page.screenshot(path=str(path), full_page=True)
        return path

    return shoot
