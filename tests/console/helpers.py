"""Console test helpers: sign in over plain HTTP (httpx) and read what the pages say."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from modelgrid.console.access import Access, Viewer
from modelgrid.console.nav import home_path
from modelgrid.tenancy.service import Principal
from tests.support import NewKey, ThreadServer, create_key

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(html: str) -> str:
    """The first CSRF token a page's forms carry."""
    found = _CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


@dataclass
class Signed:
    """An httpx client signed in to the console (its cookie jar holds the session)."""

    http: httpx.Client
    key: NewKey
    csrf: str

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self.http.get(f"/console{path}", **kw)  # type: ignore[arg-type]

    def post(self, path: str, data: dict[str, str] | None = None, **kw: object) -> httpx.Response:
        form = {"csrf_token": self.csrf, **(data or {})}
        return self.http.post(f"/console{path}", data=form, **kw)  # type: ignore[arg-type]


def login_token(http: httpx.Client) -> str:
    page = http.get("/console/login")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def sign_in_response(http: httpx.Client, plaintext: str) -> httpx.Response:
    token = login_token(http)
    return http.post("/console/login", data={"csrf_token": token, "key": plaintext})


def sign_in(server: ThreadServer, key: NewKey) -> Signed:
    """A new client signed in with ``key``; its CSRF token read from the landing page."""
    http = httpx.Client(base_url=server.base_url, timeout=10, follow_redirects=False)
    r = sign_in_response(http, key.plaintext)
    assert r.status_code == 303, r.text
    landing = http.get(r.headers["location"])
    assert landing.status_code == 200, landing.text
    return Signed(http, key, csrf_of(landing.text))


def make_key(server: ThreadServer, **kwargs: object) -> NewKey:
    return create_key(server.settings.database_url, **kwargs)


def landing(access: Access) -> str:
    """Where ``access`` lands after signing in (``nav.home_path``)."""
    who = Principal(key_id="k", workspace_id="ws", role="tenant", name="")
    return "/console" + home_path(Viewer(who, access, "mg-k", ""))


@contextmanager
def request_statements(server: ThreadServer) -> Iterator[list[str]]:
    """The SQL statements the server's database engine runs for HTTP requests while inside:
    those sent from uvicorn's request tasks (``RequestResponseCycle.run_asgi``) and Starlette's
    streamed bodies (``StreamingResponse``), not the background loops' polls (the change
    follower, the batch runner, the indexer), which may land during a page load on a loaded
    machine."""
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        task = asyncio.current_task()
        if task is None:
            return
        coro = task.get_coro().__qualname__  # type: ignore[union-attr]
        if coro.endswith("run_asgi") or "StreamingResponse" in task.get_name():  # anyio names it
            statements.append(statement)

    engine = server.state.db.sync_engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
