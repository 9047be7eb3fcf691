"""Test support: run a real uvicorn server in a thread or a `modelgrid serve` subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import uvicorn
from cryptography.fernet import Fernet

from modelgrid.app import create_app
from modelgrid.config import Settings
from modelgrid.control import ControlPlane, FileTopology
from modelgrid.engines.base import Engine
from modelgrid.protocol.admin import KeyCreate
from modelgrid.routing.topology import default_topology
from modelgrid.storage import db
from modelgrid.storage.sealing import Sealer
from tests.databases import ensure_migrated

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class NewKey:
    """A key made for a test: its id, workspace and plaintext (shown once)."""

    key_id: str
    prefix: str
    workspace_id: str
    plaintext: str


SEALER = Sealer(Fernet.generate_key())
"""The tests' secret key (``storage.sealing``), one per test process."""


def control_plane(sessions: Any, *models: str, topology: Any = None) -> ControlPlane:
    """A control plane over ``sessions`` as the CLI builds one: ``topology`` (default: the
    embedded default serving ``models``), no topology file written."""
    base = topology if topology is not None else default_topology(models)
    return ControlPlane(
        sessions, FileTopology(Path("/nonexistent/topology.toml"), base, models), sealer=SEALER
    )


async def create_key_async(
    sessions: Any,
    *,
    name: str = "",
    role: Literal["tenant", "admin"] = "tenant",
    workspace: str = "default",
) -> NewKey:
    """Create a key through the control plane, as the CLI does (the workspace is created if
    missing), over the embedded default topology."""
    body = KeyCreate(name=name, role=role)
    k = await control_plane(sessions).keys.create_in(
        workspace, body, actor="cli:test", create_workspace=True
    )
    return NewKey(k.id, k.prefix, k.workspace_id, k.key)


def create_key(database_url: str, **kwargs: Any) -> NewKey:
    """``create_key_async`` on ``database_url``, migrating it first unless it is known to be
    at head (``tests.databases``)."""

    async def go() -> NewKey:
        engine = db.create_engine(database_url)
        try:
            return await create_key_async(db.sessionmaker(engine), **kwargs)
        finally:
            await engine.dispose()

    ensure_migrated(database_url)
    return asyncio.run(go())


class QuickServer(uvicorn.Server):
    """uvicorn's server, stopping as soon as it is asked: uvicorn looks at ``should_exit``
    every 0.1 s and then pauses 0.1 s before it closes, which over hundreds of test servers
    adds up to a minute. Otherwise the same: connections are asked to close and waited for,
    then the app's lifespan ends."""

    async def main_loop(self) -> None:
        ticks = 0
        while not await self.on_tick(0 if ticks % 200 == 0 else 1):  # the Date header: 1 s
            await asyncio.sleep(0.005)
            ticks += 1

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110 (no event to wait on)
            await asyncio.sleep(0.005)
        # Bounded, as ``modelgrid serve``'s graceful shutdown is: asyncio's wait_closed can
        # wait on a transport that closed without detaching (0 connections left, yet a test
        # server hung here for good about once in ten suite runs).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                for server in self.servers:
                    await server.wait_closed()
        await self.lifespan.shutdown()


class AppThread:
    """Any ASGI app on a loopback port, served by uvicorn in a background thread; ``start``
    returns once ``ready_path`` answers 200."""

    def __init__(
        self,
        app: Any,
        ready_path: str = "/health",
        port: int | None = None,
        lifespan: Literal["auto", "on", "off"] = "auto",
    ) -> None:
        # Bound here and handed to uvicorn, not a number to bind later: a port picked free
        # and bound seconds later, in the server's thread, was once taken in between by
        # another worker of the suite ("address already in use").
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.port = int(self.sock.getsockname()[1])
        self.app = app
        self.ready_path = ready_path
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan=lifespan
        )
        self.server = QuickServer(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        finally:
            self.loop.close()
            self.sock.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=1) as http:
            while time.monotonic() < deadline:
                if not self.thread.is_alive():
                    raise RuntimeError("server exited before it was ready")
                try:
                    if http.get(self.base_url + self.ready_path).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        if self.thread.is_alive():  # say what it is stuck on, rather than wait on in silence
            try:
                tasks = list(asyncio.all_tasks(self.loop))
            except RuntimeError:  # the set changed while read from this thread
                tasks = []
            where = [f"{t.get_name()}: {_await_chain(t)}" for t in tasks]
            state = self.server.server_state
            raise RuntimeError(
                f"server on port {self.port} did not stop in 30 s: {len(state.connections)}"
                f" connection(s), {len(state.tasks)} request task(s) open; tasks at {where};"
                f" threads at {_thread_stacks()}"
            )


def _await_chain(task: asyncio.Task[Any]) -> str:
    """Where a suspended task waits: its coroutine, then what each awaits in turn, down to
    the future at the bottom (``Task.get_stack`` shows only the outermost frame)."""
    import gc

    steps = []
    obj: Any = task.get_coro()
    while obj is not None and len(steps) < 40:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None)
        if frame is not None:
            code = frame.f_code
            steps.append(f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_name}:{frame.f_lineno}")
            obj = getattr(obj, "cr_await", None) or getattr(obj, "ag_await", None)
        elif type(obj).__name__ == "async_generator_asend":  # look inside the generator
            obj = next((r for r in gc.get_referents(obj) if hasattr(r, "ag_frame")), None)
        else:
            steps.append(repr(obj)[:300])
            break
    return " -> ".join(steps)


def _thread_stacks() -> list[str]:
    """Every thread's innermost frames (where an executor or aiosqlite thread is stuck)."""
    import traceback

    out = []
    for ident, frame in sys._current_frames().items():
        name = next((t.name for t in threading.enumerate() if t.ident == ident), str(ident))
        tail = traceback.extract_stack(frame)[-4:]
        out.append(f"{name}: " + " <- ".join(f"{f.name}:{f.lineno}" for f in reversed(tail)))
    return out


@dataclass
class ThreadServer:
    """The gateway app (``create_app``) on a loopback port, served by uvicorn in a background
    thread (``AppThread``)."""

    settings: Settings
    engine_factory: Callable[[Settings], Iterable[Engine]]
    port: int = field(default_factory=free_port)
    api_key: str = ""  # a tenant key, where the test made one

    def __post_init__(self) -> None:
        self.app = create_app(self.settings, self.engine_factory)
        self.served = AppThread(self.app, "/health/ready", self.port, lifespan="on")
        self.server, self.loop, self.thread = (
            self.served.server,
            self.served.loop,
            self.served.thread,
        )

    def call(self, coro: Any) -> Any:
        """Run ``coro`` on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self):  # type: ignore[no-untyped-def]
        return self.app.state.modelgrid

    def new_key(self, **kwargs: object) -> str:
        """A new key's plaintext (``create_key`` on this server's database)."""
        return create_key(self.settings.database_url, **kwargs).plaintext

    def start(self) -> ThreadServer:
        self.served.start()
        return self

    def stop(self) -> None:
        self.served.stop()


def sync_url(url: str) -> str:
    """The synchronous-driver twin of an async database URL (for direct test queries)."""
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def _url_of(where: Path | str | ThreadServer) -> str:
    if isinstance(where, ThreadServer):
        return sync_url(where.settings.database_url)
    if isinstance(where, Path):
        return f"sqlite:///{where}"
    return sync_url(where)


def db_rows(where: Path | str | ThreadServer, query: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of ``query`` (named ``:params``) on a server's database, a database URL, or a
    SQLite file: the same call works on SQLite and PostgreSQL."""
    import sqlalchemy as sa

    engine = sa.create_engine(_url_of(where))
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(query), params)]
    finally:
        engine.dispose()


def db_execute(where: Path | str | ThreadServer, query: str, **params: Any) -> None:
    """Run and commit one statement (named ``:params``), on SQLite or PostgreSQL alike."""
    import sqlalchemy as sa

    engine = sa.create_engine(_url_of(where))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(query), params)
    finally:
        engine.dispose()


def usage_rows(
    where: Path | str | ThreadServer, *, expect: int, timeout_s: float = 10
) -> list[dict[str, Any]]:
    """Usage records, oldest first, waiting until at least ``expect`` rows are written.
    ``where``: a server (its database, SQLite or PostgreSQL), a database URL, or a SQLite file."""
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = db_rows(where, "SELECT * FROM usage_records ORDER BY created_at")
        if len(rows) >= expect:
            return rows
        time.sleep(0.05)
    return rows


def usage_rows_matching(
    where: Path | str | ThreadServer, timeout_s: float = 10, **match: object
) -> list[dict[str, Any]]:
    """Usage records whose columns equal ``match``, waiting until at least one is written
    (other requests' records being present says nothing about this one's)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [
            r
            for r in db_rows(where, "SELECT * FROM usage_records ORDER BY created_at")
            if all(r[k] == v for k, v in match.items())
        ]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@dataclass
class ProcessServer:
    """``python -m modelgrid serve`` as a subprocess, as a user starts it (``command``: what
    follows the interpreter, before ``--port``; ``tests.fake_gateway.command()`` serves the
    scripted engine instead)."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    command: tuple[str, ...] = ("-m", "modelgrid", "serve")

    def start(self, timeout_s: float = 180) -> ProcessServer:
        env = {**os.environ, **self.env}
        self.log = open(self.log_path or os.devnull, "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, *self.command, "--port", str(self.port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=REPO,
        )
        self.stdout_lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self.stop()  # its pipe and log closed: no ResourceWarning in a later test
                    raise RuntimeError(f"server exited with {self.proc.returncode}")
                try:
                    if http.get(f"{self.base_url}/health/ready").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not become ready")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.stdout_lines.append(raw.decode("utf-8", "replace"))

    def printed_key(self, label: str) -> str:
        for line in self.stdout_lines:
            m = re.match(rf"{label}\s*:\s*(mg-\S+)", line)
            if m:
                return m.group(1)
        raise LookupError(label)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.reader.join(5)  # it reads to the end of the pipe, then the pipe is closed
            self.log.close()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


DEAD_UPSTREAM = "http://127.0.0.1:9/v1"  # nothing listens on the discard port


def write_topology(
    path: Path, regions: dict[str, str], models: Iterable[str] = (), *, gateway: str
) -> None:
    """A topology file: ``regions`` (id: jurisdiction, "" for none), ``gateway`` among them,
    and each of ``models`` deployed in the gateway's region on an upstream nobody answers
    (the control plane checks names against what is deployed, not whether it is up)."""
    from modelgrid.routing.topology import Deployment, Region, Replica, Topology, save

    t = Topology(tuple(Region(r, "", j) for r, j in regions.items()), gateway_region=gateway)
    for m in models:
        t = t.with_deployment(
            Deployment(m, gateway, (Replica("", "upstream", base_url=DEAD_UPSTREAM),))
        )
    save(t, path)
