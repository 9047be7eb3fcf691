"""Gateway CPU per non-streamed chat request, no sockets: the whole app (``create_app``) through
raw ASGI (``httpx.ASGITransport``), the scripted ``FakeEngine`` in-process, SQLite, a real tenant
key, metering on; 200 warm-up requests, then R rounds of N requests, each printed as
microseconds of this process's CPU per request. ``--otel``: the OpenTelemetry GenAI telemetry
on (the SDK with in-memory exporters, ``tests/otel_memory.py``).

Less noisy than ``gateway_overhead.py`` on a shared machine (CPU time, not throughput), and a
tree against another one in the same minutes (a ``git worktree`` of the baseline):

    (cd $TREE && PYTHONPATH=src:. taskset -c 1 python bench/gateway_cpu.py 300 5 [--otel])
"""

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
from tests.conftest import make_settings
from tests.support import create_key

from modelgrid.app import create_app
from modelgrid.engines.fake import FakeEngine

N, R = int(sys.argv[1]), int(sys.argv[2])
OTEL = "--otel" in sys.argv


TMP = Path(tempfile.mkdtemp())
SETTINGS = make_settings(TMP, None, engine={"isolation": "in_process", "models": []})
KEY = create_key(SETTINGS.database_url, name="b").plaintext


async def main() -> None:
    settings, key = SETTINGS, KEY
    kw = {}
    if OTEL:
        from tests.otel_memory import memory_telemetry

        kw["genai"] = memory_telemetry().genai
    app = create_app(settings, lambda _s: [FakeEngine("fake-model")], **kw)
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    }
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        for _ in range(100):
            r = await c.get("/health/ready")
            if r.status_code == 200:
                break
            await asyncio.sleep(0.05)
        h = {"authorization": f"Bearer {key}"}
        for _ in range(200):
            assert (await c.post("/v1/chat/completions", json=body, headers=h)).status_code == 200
        out = []
        for _ in range(R):
            t0 = time.process_time()
            for _ in range(N):
                await c.post("/v1/chat/completions", json=body, headers=h)
            out.append((time.process_time() - t0) / N * 1e6)
        print(" ".join(f"{x:.0f}" for x in out))


asyncio.run(main())
