"""Console page renders over HTTP at the bench's volume (``bench/console.py --pages``).

The real gateway (``create_app`` over the bench's database, a scripted engine: no model is
needed to render pages) is served by uvicorn in a thread; an operator (an admin key) and a
workspace member (a key of ``ws_00``, the busiest workspace: about a quarter of all rows)
sign in through the sign-in form, and each page is fetched ``repeat`` times after one warm
call with a plain ``httpx`` client: time = request sent to the last byte of the body read
(the session check, the page's SQL, the template, the network stack), i.e. what a browser
waits for. Keys and sessions it makes go into the bench database (a few rows).
"""

from __future__ import annotations

import asyncio
import math
import re
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import select

from modelgrid.app import create_app
from modelgrid.config import Settings
from modelgrid.control import ControlPlane, FileTopology
from modelgrid.engines.fake import FakeEngine
from modelgrid.protocol.admin import KeyCreate
from modelgrid.routing.topology import default_topology
from modelgrid.storage import db
from modelgrid.storage.models import UsageRecord

MEMBER_WORKSPACE = "ws_00"


async def _keys(url: str) -> tuple[str, str, str]:
    """(admin key, member key of ``ws_00``), created through the control plane, and the
    oldest request of ``ws_00`` (what the search looks up: the far end of the ledger)."""
    engine = db.create_engine(url)
    try:
        sessions = db.sessionmaker(engine)
        async with sessions() as session:
            u = UsageRecord
            oldest = (
                await session.execute(
                    select(u.request_id)
                    .where(u.workspace_id == MEMBER_WORKSPACE)
                    .order_by(u.created_at)
                    .limit(1)
                )
            ).scalar_one()
        plane = ControlPlane(
            sessions, FileTopology(Path("/nonexistent/topology.toml"), default_topology(()), ())
        )
        admin = await plane.keys.create_in(
            "bench-admin",
            KeyCreate(name="bench-op", role="admin"),
            actor="bench",
            create_workspace=True,
        )
        member = await plane.keys.create_in(
            MEMBER_WORKSPACE, KeyCreate(name="bench-member"), actor="bench"
        )
        return admin.key, member.key, oldest
    finally:
        await engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sign_in(base: str, key: str) -> httpx.Client:
    http = httpx.Client(base_url=base, timeout=60)
    page = http.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
    assert token is not None, page.text[:300]
    r = http.post("/console/login", data={"csrf_token": token.group(1), "key": key})
    assert r.status_code == 303, r.text[:300]
    return http


def _newest_ids(http: httpx.Client) -> list[str]:
    return re.findall(r'<tr data-request-id="([^"]+)"', http.get("/console/requests").text)


def pages(newest: list[str], oldest: str) -> list[tuple[str, str, str]]:
    """(name, who, path) of each timed page (``newest``: the operator's first page of the
    request log; ``oldest``: the member's oldest request)."""
    second = newest[-1]
    return [
        ("overview 24 h (hour)", "operator", "/console/overview?range=24h"),
        ("overview 24 h (hour)", "member", "/console/overview?range=24h"),
        ("overview 1 h (minute)", "operator", "/console/overview?range=1h"),
        ("overview 3 d by region (hour)", "operator", "/console/overview?range=3d&by=region"),
        ("overview 7 d by region (day)", "operator", "/console/overview?range=7d&by=region"),
        ("overview 30 d by model (day)", "operator", "/console/overview?range=30d&by=model"),
        ("overview 30 d by model (day)", "member", "/console/overview?range=30d&by=model"),
        ("overview htmx refresh 24 h", "operator", "/console/overview?range=24h#htmx"),
        ("usage 7 days", "operator", "/console/usage"),
        ("usage 7 days", "member", "/console/usage"),
        ("usage 7 days, model + region", "operator", "/console/usage?model=qwen-7b&region=eu-west"),
        ("invoice 2026-11", "operator", "/console/usage/invoice?month=2026-11&workspace=ws_00"),
        ("invoice 2026-11", "member", "/console/usage/invoice?month=2026-11"),
        ("request log, newest", "operator", "/console/requests"),
        ("request log, newest", "member", "/console/requests"),
        ("request log, page 2", "operator", f"/console/requests?before={second}"),
        ("request log, 5xx", "operator", "/console/requests?status=5xx"),
        ("request log, 5xx", "member", "/console/requests?status=5xx"),
        (
            "request log, model+region",
            "member",
            "/console/requests?model=mistral-7b&region=us-east",
        ),
        ("request log, search by id", "member", f"/console/requests?id={oldest}"),
        ("regions", "operator", "/console/regions"),
        ("playground", "member", "/console/playground"),
        ("batches", "operator", "/console/batches"),
        ("knowledge bases", "member", "/console/knowledge"),
        ("usage CSV 7 days (download)", "member", "/console/usage/export.csv"),
    ]


def _p95(times: list[float]) -> float:
    return sorted(times)[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]


def time_pages(url: str, repeat: int) -> list[tuple[str, str, float, float, float, int]]:
    """(page, who, p50 ms, p95 ms, max ms, body bytes) of each page, printed as they come."""
    admin_key, member_key, oldest = asyncio.run(_keys(url))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            database={"url": url},  # type: ignore[arg-type]
        )
        app = create_app(settings, lambda _s: [FakeEngine("bench-model")])
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.1)
        results = []
        try:
            clients = {"operator": _sign_in(base, admin_key), "member": _sign_in(base, member_key)}
            for name, who, path in pages(_newest_ids(clients["operator"]), oldest):
                http = clients[who]
                htmx = path.endswith("#htmx")
                path = path.removesuffix("#htmx")
                headers = {"HX-Request": "true"} if htmx else {}
                first = http.get(path, headers=headers)  # warm: statements, templates
                assert first.status_code == 200, (path, first.status_code, first.text[:300])
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    r = http.get(path, headers=headers)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, (path, r.status_code)
                row = (name, who, statistics.median(times), _p95(times), max(times), len(r.content))
                results.append(row)
                print(
                    f"  {name:32s} {who:8s} p50 {row[2]:7.1f} ms  p95 {row[3]:7.1f} ms  "
                    f"max {row[4]:7.1f} ms  {row[5]:>9,} bytes",
                    flush=True,
                )
            for c in clients.values():
                c.close()
        finally:
            server.should_exit = True
            thread.join(30)
    return results


__all__ = ["pages", "time_pages"]
