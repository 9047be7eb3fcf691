"""Limits and prices seen through HTTP: 429s with Retry-After and OpenAI's rate-limit
headers, DashScope's throttling codes, 403 for a model outside the key's scope, costs.
Runs on SQLite and on PostgreSQL (budgets, scopes and expiry are SQL that differs)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx

from tests.databases import BOTH_DATABASES
from tests.support import ThreadServer, db_execute, usage_rows

pytestmark = BOTH_DATABASES

MSG = [{"role": "user", "content": "What is the capital of France?"}]
BODY = {"model": "fake-model", "messages": MSG, "max_tokens": 4}
DS_PATH = "/api/v1/services/aigc/text-generation/generation"
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def key_id(server: ThreadServer) -> str:
    return server.api_key.split("_")[0].removeprefix("mg-")  # type: ignore[attr-defined]


def post(server: ThreadServer, path: str = "/v1/chat/completions", **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.api_key}"}  # type: ignore[attr-defined]
    return httpx.post(f"{server.base_url}{path}", headers=headers, **kw)  # type: ignore[arg-type]


def test_rpm_limit_headers_and_429(fake_server: ThreadServer) -> None:
    db_execute(
        fake_server,
        "UPDATE api_keys SET rpm_limit = 2, tpm_limit = 1000 WHERE id = :id",
        id=key_id(fake_server),
    )
    r1 = post(fake_server, json=BODY)
    assert r1.status_code == 200
    assert r1.headers["x-ratelimit-limit-requests"] == "2"
    assert r1.headers["x-ratelimit-remaining-requests"] == "1"
    assert r1.headers["x-ratelimit-limit-tokens"] == "1000"
    assert r1.headers["x-ratelimit-remaining-tokens"] == str(1000 - (6 + 4))
    r2 = post(fake_server, json={**BODY, "stream": True})
    assert r2.status_code == 200 and r2.headers["x-ratelimit-remaining-requests"] == "0"
    r3 = post(fake_server, json=BODY)
    assert r3.status_code == 429
    assert r3.headers["retry-after"] == "30"
    assert r3.headers["x-ratelimit-remaining-requests"] == "0"
    assert r3.json()["error"]["code"] == "rate_limit_exceeded"
    assert r3.json()["error"]["type"] == "rate_limit_error"
    ds = post(fake_server, DS_PATH, json={"model": "fake-model", "input": {"prompt": "hi"}})
    assert ds.status_code == 429 and ds.json()["code"] == "Throttling.RateQuota"
    assert len(usage_rows(fake_server, expect=2)) == 2  # refused requests bill nothing


def test_budget_exhausted_is_a_clear_error(fake_server: ThreadServer) -> None:
    db_execute(
        fake_server,
        "INSERT INTO prices (model, region, currency, input_micros_per_1m,"
        " cached_input_micros_per_1m, output_micros_per_1m, effective_from, created_at)"
        " VALUES ('fake-model', NULL, 'USD', 1000000, 500000, 2000000, :at, :at)",
        at=LONG_AGO,
    )
    fake_server.call(fake_server.state.tenancy.reload_prices())
    db_execute(
        fake_server,
        "UPDATE workspaces SET monthly_budget_micros = 20"
        " WHERE id = (SELECT workspace_id FROM api_keys WHERE id = :id)",
        id=key_id(fake_server),
    )
    r1 = post(fake_server, json=BODY)  # 6 prompt x $1/1M + 4 output x $2/1M = 14 micros
    assert r1.status_code == 200
    rows = usage_rows(fake_server, expect=1)
    assert (rows[0]["cost_micros"], rows[0]["currency"]) == (14, "USD")
    r2 = post(fake_server, json=BODY)  # 14 < 20: admitted, brings the month to 28
    assert r2.status_code == 200
    r3 = post(fake_server, json=BODY)
    assert r3.status_code == 429
    assert r3.json()["error"]["code"] == "insufficient_quota"
    assert "monthly spend budget" in r3.json()["error"]["message"]
    ds = post(fake_server, DS_PATH, json={"model": "fake-model", "input": {"prompt": "hi"}})
    assert ds.status_code == 429 and ds.json()["code"] == "Throttling.AllocationQuota"


def test_model_outside_key_scope_is_403(fake_server: ThreadServer) -> None:
    db_execute(
        fake_server,
        "UPDATE api_keys SET allowed_models = :m WHERE id = :id",
        m='["other-model"]',
        id=key_id(fake_server),
    )
    r = post(fake_server, json=BODY)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "model_not_allowed"


def test_expired_key_is_401(fake_server: ThreadServer) -> None:
    db_execute(
        fake_server,
        "UPDATE api_keys SET expires_at = :at WHERE id = :id",
        at=LONG_AGO,
        id=key_id(fake_server),
    )
    r = post(fake_server, json=BODY)
    assert r.status_code == 401 and r.json()["error"]["code"] == "expired_api_key"


def test_models_list_shows_only_the_keys_models(fake_server: ThreadServer) -> None:
    db_execute(
        fake_server,
        "UPDATE api_keys SET allowed_models = :m WHERE id = :id",
        m='["other-model"]',
        id=key_id(fake_server),
    )
    headers = {"Authorization": f"Bearer {fake_server.api_key}"}  # type: ignore[attr-defined]
    r = httpx.get(f"{fake_server.base_url}/v1/models", headers=headers)
    assert r.status_code == 200 and r.json()["data"] == []
    r = httpx.get(f"{fake_server.base_url}/v1/models/fake-model", headers=headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_sixteen_at_once_never_overspend_a_token_budget(fake_server: ThreadServer) -> None:
    """Each request reserves its worst case (6 prompt + 4 max tokens = 10) until it ends, so
    16 sent at once against a 35-token budget admit 4 (0, 10, 20, 30 held < 35), never 16."""
    db_execute(
        fake_server,
        "UPDATE workspaces SET monthly_token_budget = 35"
        " WHERE id = (SELECT workspace_id FROM api_keys WHERE id = :id)",
        id=key_id(fake_server),
    )
    statuses: list[int] = []

    def one() -> None:
        statuses.append(post(fake_server, json=BODY, timeout=30).status_code)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 4 + [429] * 12
    rows = usage_rows(fake_server, expect=4)
    assert len(rows) == 4 and sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) == 40
