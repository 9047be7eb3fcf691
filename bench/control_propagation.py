"""Control-plane propagation across gateways (#16): how soon an admin change made on one
gateway is live on the others.

Three gateway processes (``tests.fake_gateway``: the scripted engine in-process, each with its
own data directory, as on three machines: no shared epoch file) share one PostgreSQL database
and one Redis. Keys are trusted for 60 s and prices reloaded every 10 min, so only the change
feed (``control.sync``) can explain what the others see. Each round, on gateway ``i % 3``:

- topology: ``POST /admin/v1/regions`` (a new region); the others polled with
  ``GET /admin/v1/regions/<id>`` (the live grid) until it answers 200;
- key revocation: ``DELETE /admin/v1/keys/<id>`` of a key every gateway has cached; the others
  polled with ``GET /v1/models`` under that key until it answers 401;
- price: ``POST /admin/v1/prices``; the others are sent a chat request every ~5 ms (each
  named by ``x-request-id``), and the first one whose usage record carries the new price
  tells when the price book changed (the time of the last request before it that did not).

Times run from the admin call sent to the change seen (so they include the admin call itself).
The same run measures the feed three ways: with ``LISTEN/NOTIFY`` (the default on
PostgreSQL); with Redis pub/sub as the wake-up (``control.listen = false``: what a gateway
behind PgBouncer, or on SQLite, gets when it shares the limiter's Redis;
``control.redis_feed``); and with polling only (``control.listen = false``,
``control.redis_wakeup = false``: every ``poll_interval_s`` = 0.5 s, the safety net), the
baseline.

Run: ``.venv/bin/python bench/control_propagation.py [--rounds 20]`` (PostgreSQL at
127.0.0.1:5432 with trust auth, Redis at 127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg
from served import Server

REPO = Path(__file__).resolve().parents[1]
PG = "127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/13"


def admin_sql(sql: str) -> None:
    with psycopg.connect(f"postgresql://postgres@{PG}/test", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def key(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "modelgrid", "keys", "create", "--json", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    import json

    made = json.loads(out)
    return f"{made['id']} {made['key']}"


def wait_until(check: object, start: float, limit_s: float = 5.0) -> float:
    while True:
        if check():  # type: ignore[operator]
            return (time.monotonic() - start) * 1000
        if time.monotonic() - start > limit_s:
            raise RuntimeError("not seen in 5 s")
        time.sleep(0.002)


def price_seen(url: str, gateways: list[Server], key: str, make_change: object) -> list[float]:
    """Send probes to each of ``gateways`` while ``make_change`` runs (sent 100 ms in);
    returns, per gateway, when its first request priced with the new price was sent (ms
    after the change was)."""
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    sent: dict[str, tuple[int, float]] = {}
    changed: list[str] = []
    begin = time.monotonic()
    start = begin + 0.1  # the change is sent 100 ms into the probes

    def change() -> None:
        time.sleep(max(0.0, start - time.monotonic()))
        changed.append(make_change())  # type: ignore[operator]

    worker = threading.Thread(target=change)
    worker.start()
    with httpx.Client(timeout=10) as http:
        while time.monotonic() - start < 1.5:
            for i, g in enumerate(gateways):
                rid = f"probe-{secrets.token_hex(6)}"
                sent[rid] = (i, (time.monotonic() - start) * 1000)
                r = http.post(
                    f"{g.base_url}/v1/chat/completions",
                    json=body,
                    headers={**headers, "x-request-id": rid},
                )
                r.raise_for_status()
            time.sleep(0.002)
    worker.join()
    price_id = changed[0]
    deadline = time.monotonic() + 10
    rows: dict[str, str | None] = {}
    sync = url.replace("+asyncpg", "")
    while len(rows) < len(sent) and time.monotonic() < deadline:
        with psycopg.connect(sync) as conn:
            rows = dict(
                conn.execute(  # type: ignore[arg-type]
                    "SELECT client_request_id, price_id FROM usage_records"
                    " WHERE client_request_id LIKE 'probe-%'"
                ).fetchall()
            )
        time.sleep(0.1)
    firsts = []
    for i in range(len(gateways)):
        mine = sorted((t, rid) for rid, (g, t) in sent.items() if g == i)
        first = next((t for t, rid in mine if str(rows.get(rid)) == price_id), None)
        if first is None:
            got = {rows.get(rid) for _, rid in mine}
            raise RuntimeError(f"no probe priced {price_id}: {len(rows)} rows, prices {got}")
        firsts.append(first)
    with psycopg.connect(sync, autocommit=True) as conn:
        conn.execute("DELETE FROM usage_records WHERE client_request_id LIKE 'probe-%'")
    return firsts


FEEDS = {  # name -> (control.listen, control.redis_wakeup)
    "LISTEN/NOTIFY": ("true", "false"),
    "Redis pub/sub": ("false", "true"),
    "poll only (baseline)": ("false", "false"),
}


def run(rounds: int, feed: str, tmp: Path) -> dict[str, list[float]]:
    listen, redis_wakeup = FEEDS[feed]
    name = f"mg_bench_{secrets.token_hex(4)}"
    admin_sql(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@{PG}/{name}"
    env = {
        "MODELGRID_DATABASE__URL": url,
        "MODELGRID_ENGINE__MODELS": '["fake-model"]',
        "MODELGRID_ENGINE__ISOLATION": "in_process",
        "MODELGRID_BOOTSTRAP_KEYS": "false",
        "MODELGRID_SERVER__LOG_LEVEL": "warning",
        "MODELGRID_AUTH__CACHE_TTL_S": "60",
        "MODELGRID_METERING__PRICES_REFRESH_S": "600",
        "MODELGRID_RATELIMIT__BACKEND": "redis",
        "MODELGRID_RATELIMIT__REDIS_URL": REDIS,
        "MODELGRID_CONTROL__TOPOLOGY_STORE": "database",
        "MODELGRID_CONTROL__LISTEN": listen,
        "MODELGRID_CONTROL__REDIS_WAKEUP": redis_wakeup,
        "MODELGRID_DATA_DIR": str(tmp / "cli"),
    }
    gateways: list[Server] = []
    try:
        subprocess.run(
            [sys.executable, "-m", "modelgrid", "db", "upgrade"],
            env={**os.environ, **env},
            check=True,
            cwd=REPO,
            capture_output=True,
        )
        admin = key(env, "--admin", "--workspace", "admin", "--create-workspace").split()[1]
        probe = key(env, "--workspace", "probe", "--create-workspace").split()[1]
        for i in range(3):
            d = tmp / f"gw{i}-{list(FEEDS).index(feed)}"
            d.mkdir()
            gateways.append(
                Server(
                    d,
                    {**env, "MODELGRID_DATA_DIR": str(d)},
                    command=("-m", "tests.fake_gateway"),
                    cwd=REPO,
                )
            )
        for g in gateways:
            g.wait_ready(60, key_line=False)
        out: dict[str, list[float]] = {"topology": [], "revocation": [], "price": []}
        calls: dict[str, list[float]] = {"topology": [], "revocation": [], "price": []}
        auth = {"Authorization": f"Bearer {admin}"}
        for n in range(rounds):
            a = gateways[n % 3]
            others = [g for g in gateways if g is not a]
            region = f"r-{n}"
            start = time.monotonic()
            httpx.post(
                f"{a.base_url}/admin/v1/regions", json={"id": region}, headers=auth, timeout=10
            ).raise_for_status()
            calls["topology"].append((time.monotonic() - start) * 1000)
            for g in others:
                out["topology"].append(
                    wait_until(
                        lambda g=g, region=region: (
                            httpx.get(
                                f"{g.base_url}/admin/v1/regions/{region}", headers=auth
                            ).status_code
                            == 200
                        ),
                        start,
                    )
                )
            key_id, plaintext = key(env, "--workspace", "probe").split()
            for g in gateways:  # cached everywhere
                r = httpx.get(
                    f"{g.base_url}/v1/models", headers={"Authorization": f"Bearer {plaintext}"}
                )
                assert r.status_code == 200
            start = time.monotonic()
            httpx.delete(
                f"{a.base_url}/admin/v1/keys/{key_id}", headers=auth, timeout=10
            ).raise_for_status()
            calls["revocation"].append((time.monotonic() - start) * 1000)
            for g in others:
                out["revocation"].append(
                    wait_until(
                        lambda g=g, plaintext=plaintext: (
                            httpx.get(
                                f"{g.base_url}/v1/models",
                                headers={"Authorization": f"Bearer {plaintext}"},
                            ).status_code
                            == 401
                        ),
                        start,
                    )
                )

            def make_price(a: Server = a, n: int = n) -> str:
                t0 = time.monotonic()
                r = httpx.post(
                    f"{a.base_url}/admin/v1/prices",
                    json={
                        "model": "fake-model",
                        "input_micros_per_1m": 1_000_000 + n,
                        "output_micros_per_1m": 1_000_000,
                    },
                    headers=auth,
                    timeout=10,
                )
                r.raise_for_status()
                calls["price"].append((time.monotonic() - t0) * 1000)
                return str(r.json()["id"])

            firsts = price_seen(url, others, probe, make_price)
            out["price"] += firsts
        return out | {f"{k} call": v for k, v in calls.items()}
    finally:
        for g in gateways:
            g.proc.terminate()
        for g in gateways:
            g.proc.wait(30)
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def summary(values: list[float]) -> str:
    v = sorted(values)
    p95 = v[min(len(v) - 1, round(0.95 * (len(v) - 1)))]
    return f"{statistics.median(v):.1f} | {p95:.1f} | {v[-1]:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mg-prop-") as tmp:
        results = {feed: run(args.rounds, feed, Path(tmp)) for feed in FEEDS}
    print(f"\n## Propagation to the 2 other gateways, {args.rounds} rounds (ms)\n")
    print("| change | feed | p50 | p95 | max | p50 vs poll only | the admin call itself, p50 |")
    print("|---|---|---|---|---|---|---|")
    for what in ("topology", "price", "revocation"):
        base = statistics.median(results["poll only (baseline)"][what])
        for feed, res in results.items():
            ratio = statistics.median(res[what]) / base
            call = statistics.median(res[f"{what} call"])
            print(f"| {what} | {feed} | {summary(res[what])} | {ratio:.2f}x | {call:.1f} |")


if __name__ == "__main__":
    main()
