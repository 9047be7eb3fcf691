"""Shutdown while a usage flush is writing: the write finishes and commits, the database
is left unlocked, and every record is stored exactly once.

The regression: ``aclose`` used to cancel the background task in the middle of its INSERT;
the statement ran on aiosqlite's thread, the commit never came, and the orphaned
transaction held SQLite's write lock while ``aclose``'s own flush waited out the busy
timeout ("database is locked"; a test server then did not stop in 30 s).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from modelgrid.storage import db
from modelgrid.tenancy.events import UsageEvent
from modelgrid.tenancy.metering import UsageWriter
from tests.databases import ensure_migrated


def _event(request_id: str) -> UsageEvent:
    return UsageEvent(
        request_id=request_id,
        client_request_id=None,
        api_key_id=None,
        workspace_id=None,
        model="fake-model",
        endpoint="chat.completions",
        prompt_tokens=3,
        completion_tokens=5,
        ttft_ms=1,
        total_ms=2,
        status=200,
        finish_reason="stop",
        created_at=datetime.now(UTC),
    )


async def test_aclose_lets_the_flush_in_progress_commit(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mg.db'}"
    await asyncio.to_thread(ensure_migrated, url)
    inserting = threading.Event()

    def pause() -> int:  # runs inside the INSERT, on aiosqlite's thread
        inserting.set()
        time.sleep(0.3)
        return 0

    # A 1 s busy timeout: a lock left behind fails the final flush in 1 s, not 30.
    engine = create_async_engine(url, connect_args={"timeout": 1})

    @event.listens_for(engine.sync_engine, "connect")
    def _register(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.create_function("pause", 0, pause)

    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TRIGGER slow_insert AFTER INSERT ON usage_records BEGIN SELECT pause(); END"
            )
        )
    gc.disable()  # as in a busy server, where the orphan is collected late (cycles)
    writer = UsageWriter(db.sessionmaker(engine), flush_interval_s=3600, batch_size=1)
    writer.start()
    writer.record(_event("in-flight"))  # batch_size 1: the writer flushes at once
    await asyncio.to_thread(inserting.wait, 5)
    writer.record(_event("queued-after"))
    try:
        await writer.aclose()  # must neither cut the INSERT nor meet a locked database
    finally:
        gc.enable()
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT request_id FROM usage_records"))).scalars()
        assert sorted(rows) == ["in-flight", "queued-after"]
    await engine.dispose()
