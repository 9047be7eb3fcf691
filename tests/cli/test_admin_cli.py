"""The admin plane from the command line: ``python -m modelgrid ...`` on a temporary database
(SQLite and PostgreSQL), changes audited as ``cli:<os user>``."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from tests.databases import BOTH_DATABASES, insert_usage, usage_row, with_sessions
from tests.support import REPO


def cli(url: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
    out = subprocess.run(
        [sys.executable, "-m", "modelgrid", *args],
        env={**os.environ, "MODELGRID_DATABASE__URL": url, "COLUMNS": "200"},
        capture_output=True,
        cwd=REPO,
        timeout=120,
    )
    if ok:
        assert out.returncode == 0, out.stderr.decode()
    return out


@BOTH_DATABASES
def test_workspace_key_price_invoice_and_audit_round_trip(database_url: str) -> None:
    url = database_url
    ws = json.loads(
        cli(
            url,
            "workspaces",
            "create",
            "acme",
            "--currency",
            "EUR",
            "--regions",
            "eu,us",
            "--home-region",
            "eu",
            "--jurisdictions",
            "de,ie",
            "--rpm",
            "60",
            "--json",
        ).stdout
    )
    assert (ws["name"], ws["currency"], ws["allowed_regions"]) == ("acme", "EUR", ["eu", "us"])
    assert ws["allowed_jurisdictions"] == ["DE", "IE"]
    assert ws["limits"]["rpm"] == 60
    ws = json.loads(
        cli(url, "workspaces", "set", ws["id"], "--unset", "rpm", "--tpm", "9", "--json").stdout
    )
    assert (ws["limits"]["rpm"], ws["limits"]["tpm"]) == (None, 9)
    assert json.loads(cli(url, "workspaces", "show", "acme", "--json").stdout) == ws
    assert [w["name"] for w in json.loads(cli(url, "workspaces", "list", "--json").stdout)] == [
        "acme"
    ]

    key = (
        cli(
            url,
            "keys",
            "create",
            "--workspace",
            "acme",
            "--name",
            "ci",
            "--models",
            "m1,m2",
            "--regions",
            "eu",
            "--jurisdictions",
            "IE",
            "--expires-in-days",
            "2",
            "--rpm",
            "5",
        )
        .stdout.decode()
        .strip()
    )
    assert key.startswith("mg-")
    listed = cli(url, "keys", "list", "--workspace", "acme", "--json").stdout.decode()
    (row,) = json.loads(listed)
    assert (row["prefix"], row["allowed_models"], row["allowed_regions"]) == (
        key.split("_")[0],
        ["m1", "m2"],
        ["eu"],
    )
    assert row["limits"]["rpm"] == 5 and row["expires_at"] is not None
    assert row["allowed_jurisdictions"] == ["IE"]
    assert key not in listed
    shown = json.loads(cli(url, "keys", "set", row["id"], "--unset", "models", "--tpm", "7").stdout)
    assert (shown["allowed_models"], shown["limits"]["tpm"]) == (None, 7)
    new_key = cli(url, "keys", "rotate", key.split("_")[0]).stdout.decode().strip()
    assert new_key.startswith("mg-") and new_key != key
    new = json.loads(cli(url, "keys", "show", new_key.split("_")[0]).stdout)
    assert (new["allowed_regions"], new["limits"]["rpm"], new["limits"]["tpm"]) == (["eu"], 5, 7)
    assert "revoked" in cli(url, "keys", "revoke", new["prefix"]).stdout.decode()
    bad = cli(url, "keys", "create", "--workspace", "acme", "--regions", "asia", ok=False)
    assert bad.returncode == 1 and b"outside" in bad.stderr
    bad = cli(url, "keys", "create", "--workspace", "acme", "--jurisdictions", "SG", ok=False)
    assert bad.returncode == 1 and b"Jurisdictions ['SG'] are outside" in bad.stderr
    empty = cli(url, "workspaces", "create", "nowhere", "--jurisdictions", " , ", ok=False)
    assert empty.returncode == 2 and b"--jurisdictions" in empty.stderr
    ws = json.loads(
        cli(url, "workspaces", "set", "acme", "--unset", "jurisdictions", "--json").stdout
    )
    assert ws["allowed_jurisdictions"] is None

    price = json.loads(
        cli(
            url,
            "prices",
            "add",
            "m1",
            "--input-micros",
            "2000000",
            "--output-micros",
            "4000000",
            "--currency",
            "EUR",
            "--json",
        ).stdout
    )
    assert price["cached_input_micros_per_1m"] == 2_000_000
    assert [p["id"] for p in json.loads(cli(url, "prices", "list", "--json").stdout)] == [
        price["id"]
    ]
    past = cli(
        url,
        "prices",
        "add",
        "m1",
        "--input-micros",
        "1",
        "--output-micros",
        "1",
        "--effective-from",
        "2020-01-01",
        ok=False,
    )
    assert past.returncode == 1 and b"past" in past.stderr

    mar = datetime(2026, 3, 5, tzinfo=UTC)
    rows = [
        usage_row(
            "a",
            mar,
            workspace_id=ws["id"],
            model="m1",
            region="eu",
            prompt_tokens=1000,
            cached_tokens=100,
            completion_tokens=500,
            cost_micros=3_800,
            currency="EUR",
        ),
        usage_row(
            "b",
            mar,
            workspace_id=ws["id"],
            model="m1",
            region="eu",
            prompt_tokens=10,
            completion_tokens=5,
            cost_micros=40,
            currency="EUR",
        ),
    ]
    with_sessions(url, lambda s: insert_usage(s, rows))
    out = cli(url, "invoice", "acme", "--month", "2026-03", "--format", "csv").stdout
    assert (
        out
        == (
            "kind,workspace_id,month,model,region,currency,requests,prompt_tokens,cached_tokens,"
            "completion_tokens,cost_micros,cost\r\n"
            f"line,{ws['id']},2026-03,m1,eu,EUR,2,1010,100,505,3840,0.003840\r\n"
            f"total,{ws['id']},2026-03,,,EUR,2,1010,100,505,3840,0.003840\r\n"
        ).encode()
    )
    inv = json.loads(cli(url, "invoice", ws["id"], "--month", "2026-03").stdout)
    assert (inv["total_cost_micros"], inv["currency"]) == (3840, "EUR")
    bad = cli(url, "invoice", "nope", "--month", "2026-03", ok=False)
    assert bad.returncode == 1 and b"No workspace" in bad.stderr

    audit = cli(url, "audit", "--json").stdout.decode()
    entries = json.loads(audit)
    assert {e["actor"] for e in entries} == {f"cli:{getpass.getuser()}"}
    assert [e["action"] for e in reversed(entries)] == [
        "workspace.create",
        "workspace.update",
        "key.create",
        "key.update",
        "key.rotate",
        "key.revoke",
        "workspace.update",
        "price.create",
    ]
    for secret in (key, new_key):
        assert secret not in audit
        assert hashlib.sha256(secret.encode()).hexdigest() not in audit


@pytest.mark.parametrize(
    "args",
    [
        ["workspaces", "create", "x", "--currency", "usd"],
        ["keys", "set", "abc", "--unset", "bogus"],
    ],
)
def test_bad_input_exits_2_without_traceback(database_url: str, args: list[str]) -> None:
    out = cli(database_url, *args, ok=False)
    assert out.returncode == 2
    assert b"Traceback" not in out.stderr


def test_keys_create_refuses_a_workspace_that_does_not_exist(database_url: str) -> None:
    typo = cli(database_url, "keys", "create", "--workspace", "acmee", ok=False)
    assert typo.returncode == 1 and b"There is no workspace 'acmee'" in typo.stderr
    assert json.loads(cli(database_url, "workspaces", "list", "--json").stdout) == []
    made = cli(database_url, "keys", "create", "--workspace", "beta", "--create-workspace")
    assert made.stdout.decode().strip().startswith("mg-")
    names = [
        w["name"] for w in json.loads(cli(database_url, "workspaces", "list", "--json").stdout)
    ]
    assert names == ["beta"]
