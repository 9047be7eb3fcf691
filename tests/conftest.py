from __future__ import annotations

import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from modelgrid.config import Settings
from modelgrid.engines.base import Engine
from modelgrid.engines.fake import FakeEngine
from tests.databases import database, default_kind, migrated_sqlite
from tests.support import ThreadServer


def make_settings(tmp_path: Path, database_url: str | None = None, **overrides: object) -> Settings:
    """Settings for a test: data in ``tmp_path``, usage flushed every 50 ms, the database at
    ``database_url`` (default: ``tmp_path/mg.db``, born migrated), ``overrides`` on top."""
    url = database_url or migrated_sqlite(tmp_path / "mg.db")
    return Settings(
        data_dir=tmp_path,
        database={"url": url},  # type: ignore[arg-type]
        metering={"flush_interval_s": 0.05},  # type: ignore[arg-type]
        **overrides,  # type: ignore[arg-type]
    )


def pytest_configure(config: pytest.Config) -> None:
    """One thread per model (llama.cpp decode, PyTorch) in every test process and the servers
    they start, unless the environment says otherwise: the suite runs a test per core
    (``-n auto``), and llama.cpp's threads spin-wait for each other, so two of them sharing
    a core with anything else run 3-4x slower than one thread alone. And one SSL context for
    all the HTTP clients the tests make."""
    os.environ.setdefault("MODELGRID_ENGINE__N_THREADS", "1")
    os.environ.setdefault("MODELGRID_ENGINE__EMBEDDING_THREADS", "1")
    _share_httpx_default_ssl_context()


def _share_httpx_default_ssl_context() -> None:
    """Every ``httpx.Client`` (each ``httpx.get``, each openai SDK client) builds a new SSL
    context and loads ~150 CA certificates into it: 55 ms of CPU, for tests that only speak
    plain HTTP to loopback, several thousand times a run. The default context is built once
    and shared (an ``SSLContext`` is immutable in use and safe across threads); any other
    ``verify``/``cert`` still gets its own."""
    from httpx._transports import default as transports

    build = transports.create_ssl_context
    built: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}

    def create_ssl_context(
        verify: ssl.SSLContext | str | bool = True, cert: Any = None, trust_env: bool = True
    ) -> ssl.SSLContext:
        if verify is not True or cert is not None:
            return build(verify=verify, cert=cert, trust_env=trust_env)
        key = (trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        if key not in built:
            built[key] = build(verify=verify, cert=cert, trust_env=trust_env)
        return built[key]

    transports.create_ssl_context = create_ssl_context  # type: ignore[assignment]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of the one real model server may take 180 s, not 60: whichever runs first
    starts the server and loads the model within its own time (20 s idle, a minute or more on
    a busy machine)."""
    for item in items:
        if "model_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(180))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than there are cores. Much of a test's time is spent
    waiting (servers and processes starting, streams, usage flushes), so a spare worker keeps
    the cores busy: on 2 cores the suite took 150 s with 3 workers, 218 s with 2."""
    return (os.cpu_count() or 1) + 1


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with groups read from each test file: every test of a file that
    uses the ``model_server`` session fixture (a real server with the model loaded, per
    worker that asks for it) runs on one worker, and so does every test of a file marked
    ``pytest.mark.xdist_group("NAME")`` (tests that must not run beside each other). xdist
    groups by renaming node ids, which pytest 9.2 no longer honours, hence this scheduler."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    groups: dict[str, str | None] = {}

    def group_of(path: str) -> str | None:
        if path not in groups:
            file = config.rootpath / path
            text = file.read_text() if file.is_file() else ""
            named = re.search(r"xdist_group\(\s*(?:name=)?[\"']([^\"']+)", text)
            groups[path] = (
                named.group(1) if named else "model_server" if "model_server" in text else None
            )
        return groups[path]

    class ByFile(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid.split("::", 1)[0]) or super()._split_scope(nodeid)

    return ByFile(config, log)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file in ``tmp_path``, or a fresh PostgreSQL database (``tests.databases``):
    the test's ``database_url`` parameter if it has one, else ``MODELGRID_TEST_DATABASE``."""
    with database(getattr(request, "param", None) or default_kind(), tmp_path) as url:
        yield url


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


class SettingsFactory(Protocol):
    def __call__(self, **overrides: object) -> Settings: ...


class ServerFactory(Protocol):
    def __call__(
        self,
        *engines: Engine,
        settings: Settings | None = None,
        key: bool = True,
        **overrides: object,
    ) -> ThreadServer: ...


@pytest.fixture
def settings_factory(tmp_path: Path, database_url: str) -> SettingsFactory:
    """``make_settings`` on this test's ``tmp_path`` and ``database_url``, with overrides
    (``settings_factory(topology_file=path, server={"max_body_bytes": 10_000})``)."""

    def make(**overrides: object) -> Settings:
        return make_settings(tmp_path, database_url, **overrides)

    return make


@pytest.fixture
def server_factory(
    settings_factory: SettingsFactory, fake_engine: FakeEngine
) -> Iterator[ServerFactory]:
    """Starts real uvicorn servers (``ThreadServer``) over the given engines (default: the
    ``fake_engine``) with ``settings`` or ``settings_factory(**overrides)``; each has a tenant
    key in ``.api_key`` unless ``key=False``. All are stopped after the test."""
    started: list[ThreadServer] = []

    def start(
        *engines: Engine, settings: Settings | None = None, key: bool = True, **overrides: object
    ) -> ThreadServer:
        served: list[Engine] = list(engines) or [fake_engine]
        server = ThreadServer(settings or settings_factory(**overrides), lambda _s: served)
        if key:
            server.api_key = server.new_key(name="test")
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def fake_server(server_factory: ServerFactory) -> ThreadServer:
    """A real uvicorn server over the scripted FakeEngine, with a tenant key in ``.api_key``."""
    return server_factory()
