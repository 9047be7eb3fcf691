"""``create_console``: the console's ASGI app, which the gateway mounts at ``/console``.

It holds the page routers (``console.nav.PAGES``: each built page's module), the sign-in
routes, the static files (served from the package with a year's cache: their URLs carry
their version) and the console's error pages.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from modelgrid.api.state import AppState
from modelgrid.config import ConsoleSettings
from modelgrid.console import errors
from modelgrid.console.deps import ConsoleHolder
from modelgrid.console.nav import PAGES, SESSION_MODULE

STATIC_CACHE = "public, max-age=31536000, immutable"


class CachedStatic:
    """The package's static files, each answered with ``Cache-Control: STATIC_CACHE`` and
    ``X-Content-Type-Options: nosniff``."""

    def __init__(self) -> None:
        directory = resources.files("modelgrid.console").joinpath("static")
        self._files = StaticFiles(directory=str(directory))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_cached(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (200, 304):
                headers = list(message.get("headers", []))
                headers.append((b"cache-control", STATIC_CACHE.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self._files(scope, receive, send_cached)


def _router_of(module: str) -> APIRouter:
    router: Any = importlib.import_module(module).router
    assert isinstance(router, APIRouter), module
    return router


def create_console(
    app_state: Callable[[], AppState], settings: ConsoleSettings | None = None
) -> FastAPI:
    """The console app.

    Args:
        app_state: The gateway's state (read on each request; it exists once the gateway's
            lifespan has started).
        settings: Sessions' lifetime, the sign-in throttle (default: ``ConsoleSettings()``).
    """
    console = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    console.state.console = ConsoleHolder(app_state, settings or ConsoleSettings())
    errors.install(console)
    console.include_router(_router_of(SESSION_MODULE))
    for page in PAGES:
        if page.module is not None:
            console.include_router(_router_of(page.module))
    console.mount("/static", CachedStatic(), name="static")
    return console


__all__ = ["STATIC_CACHE", "create_console"]
