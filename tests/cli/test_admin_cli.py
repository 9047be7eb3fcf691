"""The admin plane from the command line: ``python -m modelgrid ...`` on a temporary database
(SQLite and PostgreSQL), changes audited as ``cli:<os user>``."""

from __future__ import annotations

import getpass
import hashlib
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelgrid.cli import app
from tests.databases import BOTH_DATABASES, insert_usage, usage_row, with_sessions
from tests.support import write_topology


def cli(url: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
    """``modelgrid ARGS`` on database ``url``, in this process (Typer's runner: the same
    command, exit status and output, without starting an interpreter each time)."""
    env = {"MODELGRID_DATABASE__URL": url, "COLUMNS": "200"}
    r = CliRunner().invoke(app, list(args), env=env)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    out = subprocess.CompletedProcess(list(args), r.exit_code, r.stdout_bytes, r.stderr_bytes)
    if ok:
        assert out.returncode == 0, out.stderr.decode()
    return out


# The regions, jurisdictions and models the round trip names (the control plane refuses
# names nobody serves); ``test_topology_changes_from_the_cli`` builds one with the CLI.
REGIONS = {"eu": "DE", "us": "IE", "asia": "SG"}


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own data directory (and so topology file) for the CLI."""
    monkeypatch.setenv("MODELGRID_DATA_DIR", str(tmp_path))
    return tmp_path


@BOTH_DATABASES
def test_workspace_key_price_invoice_and_audit_round_trip(
    database_url: str, tmp_path: Path
) -> None:
    url = database_url
    write_topology(tmp_path / "topology.toml", REGIONS, ["m1", "m2"], gateway="eu")
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


@BOTH_DATABASES
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


def test_topology_changes_from_the_cli(database_url: str, tmp_path: Path) -> None:
    url = database_url
    cli(
        url,
        "regions",
        "add",
        "eu-west-1",
        "--name",
        "Ireland",
        "--jurisdiction",
        "ie",
        "--latency",
        "local=150",
    )
    cli(url, "regions", "set", "eu-west-1", "--drain")
    put = cli(
        url,
        "deployments",
        "put",
        "m9",
        "eu-west-1",
        "--upstream",
        "http://10.0.0.5:9001/v1",
        "--max-concurrency",
        "4",
    )
    assert put.stdout.decode().split() == ["deployed", "m9", "in", "eu-west-1:", "eu-west-1/m9/0"]
    regions = json.loads(cli(url, "regions", "--json").stdout)
    irl = next(r for r in regions if r["id"] == "eu-west-1")
    assert (irl["jurisdiction"], irl["enabled"], irl["latency_ms"], irl["models"]) == (
        "IE",
        False,
        150.0,
        ["m9"],
    )
    rows = json.loads(cli(url, "deployments", "--model", "m9", "--json").stdout)
    assert [(r["region"], r["kind"], r["base_url"], r["max_concurrency"]) for r in rows] == [
        ("eu-west-1", "upstream", "http://10.0.0.5:9001/v1", 4)
    ]
    assert [(r["attempts"], r["prefix_header"]) for r in rows] == [(1, None)]
    pool_url = "http://10.0.0.6:8000/m9/v1"
    cli(url, "deployments", "put", "m9", "eu-west-1", "--upstream", pool_url,
        "--attempts", "3", "--prefix-header", "x-session-id")  # fmt: skip
    rows = json.loads(cli(url, "deployments", "--model", "m9", "--json").stdout)
    assert [(r["base_url"], r["attempts"], r["prefix_header"]) for r in rows] == [
        (pool_url, 3, "x-session-id")
    ]
    local = cli(url, "deployments", "put", "m9", "eu-west-1", "--local", ok=False)
    assert local.returncode == 1 and b"gateway" in local.stderr  # residency: local runs here
    ws = cli(url, "workspaces", "create", "irl", "--regions", "eu-west-1")
    assert ws.returncode == 0
    named = cli(url, "regions", "remove", "eu-west-1", ok=False)
    assert named.returncode == 1 and b"workspace(s) irl" in named.stderr
    cli(url, "deployments", "remove", "m9", "eu-west-1")
    assert json.loads(cli(url, "deployments", "--model", "m9", "--json").stdout) == []
    pattern = cli(url, "regions", "add", "bad/id", ok=False)
    assert pattern.returncode == 2 and b"'^[a-z0-9][a-z0-9-]{0,63}$'" in pattern.stderr
    listed = json.loads(cli(url, "regions", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [
        r["id"] for r in json.loads(cli(url, "regions", "--json").stdout)
    ]
    bad = cli(url, "regions", "add", "x", "--latency", "local", ok=False)
    assert bad.returncode == 2 and b"REGION=MILLISECONDS" in bad.stderr
    (tmp_path / "topology.toml").write_text("regions = [", encoding="utf-8")
    broken = cli(url, "regions", "add", "y", ok=False)
    assert broken.returncode == 1 and b"Traceback" not in broken.stderr
    assert broken.stderr.decode().startswith(f"topology file {tmp_path / 'topology.toml'}:")
    actions = [e["action"] for e in reversed(json.loads(cli(url, "audit", "--json").stdout))]
    assert actions == [
        "region.create",
        "region.update",
        "deployment.put",
        "deployment.put",
        "workspace.create",
        "deployment.delete",
    ]
