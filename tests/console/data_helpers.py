"""Helpers of the console's data-page tests: real requests through the gateway, ledger rows
written through the real write path (``repositories.insert_usage``: the roll-ups with
them), and reading the pages' numbers."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from modelgrid.storage import repositories as repo
from tests.support import NewKey, ThreadServer, usage_rows


def chat(server: ThreadServer, key: NewKey | str, text: str = "Hi") -> httpx.Response:
    """One non-streamed chat completion with ``key``; returns the response (200 asserted)."""
    secret = key if isinstance(key, str) else key.plaintext
    r = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "fake-model", "messages": [{"role": "user", "content": text}]},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r


def wait_rows(server: ThreadServer, expect: int) -> list[dict[str, Any]]:
    rows = usage_rows(server, expect=expect)
    assert len(rows) == expect, rows
    return rows


def seed(
    server: ThreadServer,
    key: NewKey,
    count: int,
    *,
    start: datetime | None = None,
    model: str = "fake-model",
    region: str = "local",
    status: int = 200,
    prefix: str = "seed",
    spacing_s: float = 1.0,
) -> list[str]:
    """``count`` ledger rows of ``key``, ``spacing_s`` apart ending now (or from ``start``),
    through ``insert_usage`` on the server's own loop; their request ids, oldest first."""
    first = start or datetime.now(UTC) - timedelta(seconds=count)
    rows = [
        {
            "request_id": f"{prefix}{i:05d}{key.key_id}",
            "api_key_id": key.key_id,
            "workspace_id": key.workspace_id,
            "model": model,
            "region": region,
            "replica": f"{region}-r{i % 2}",
            "endpoint": "chat.completions",
            "prompt_tokens": 10 + i,
            "cached_tokens": 0,
            "completion_tokens": 5 + i % 7,
            "cost_micros": 1000 + i,
            "currency": "USD",
            "ttft_ms": 40 + i,
            "total_ms": 90 + i,
            "status": status,
            "finish_reason": "stop",
            "created_at": first + timedelta(seconds=i * spacing_s),
            "batch_id": None,
        }
        for i in range(count)
    ]

    async def write() -> None:
        async with server.state.sessions() as session, session.begin():
            await repo.insert_usage(session, rows)

    server.call(write())
    return [r["request_id"] for r in rows]


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def sums(rows: list[dict[str, Any]], *cols: str) -> tuple[int, ...]:
    return tuple(sum(int(r[c]) for r in rows) for c in cols)


def request_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-request-id="([^"]+)"', html)


def totals_requests(html: str) -> dict[str, int]:
    """The overview's totals table: requests per group."""
    found = re.findall(
        r'<tr data-group="([^"]+)">.*?<td class="num requests">([\d,]+)</td>', html, re.S
    )
    return {g: int(n.replace(",", "")) for g, n in found}
