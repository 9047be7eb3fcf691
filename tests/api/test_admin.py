"""The admin API over a real uvicorn server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import BOTH_DATABASES, insert_usage, usage_row, with_sessions
from tests.support import ThreadServer, create_key, usage_rows, write_topology

pytestmark = BOTH_DATABASES

# The regions and models the tests below name: the control plane refuses names nobody serves.
REGIONS = {
    "local": "",
    "eu-west": "IE",
    "eu-north": "SE",
    "eu-1": "",
    "eu-2": "",
    "eu": "",
    "us": "",
}


@pytest.fixture(autouse=True)
def _topology(tmp_path: Path) -> None:
    """The gateway's topology file (``fake_server`` serves from ``tmp_path``)."""
    write_topology(
        tmp_path / "topology.toml", REGIONS, ["other", "m", "m0", "m1", "m2"], gateway="local"
    )


LIMITS_NONE = {
    "rpm": None,
    "tpm": None,
    "concurrency": None,
    "monthly_budget_micros": None,
    "monthly_token_budget": None,
}


@dataclass
class Admin:
    server: ThreadServer
    key: str
    http: httpx.Client

    @property
    def prefix(self) -> str:
        return self.key.split("_")[0]

    @property
    def url(self) -> str:
        return self.server.settings.database_url

    def __call__(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, f"/admin/v1{path}", **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self(method, path, **kw)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def admin(fake_server: ThreadServer) -> Iterator[Admin]:
    key = create_key(fake_server.settings.database_url, role="admin", workspace="admin").plaintext
    with httpx.Client(
        base_url=fake_server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as http:
        yield Admin(fake_server, key, http)


def v1(server: ThreadServer, key: str, path: str = "/v1/models") -> httpx.Response:
    return httpx.get(f"{server.base_url}{path}", headers={"Authorization": f"Bearer {key}"})


ROUTES = [
    ("POST", "/workspaces", {"name": "x"}),
    ("GET", "/workspaces", None),
    ("GET", "/workspaces/ws_1", None),
    ("PATCH", "/workspaces/ws_1", {}),
    ("POST", "/workspaces/ws_1/keys", {}),
    ("GET", "/workspaces/ws_1/invoices/2026-01", None),
    ("GET", "/keys", None),
    ("GET", "/keys/abc", None),
    ("PATCH", "/keys/abc", {}),
    ("DELETE", "/keys/abc", None),
    ("POST", "/keys/abc/rotate", None),
    ("POST", "/prices", {"model": "m", "input_micros_per_1m": 1, "output_micros_per_1m": 1}),
    ("GET", "/prices", None),
    ("GET", "/usage", None),
    ("GET", "/audit", None),
]


def test_admin_routes_need_an_admin_key_and_admin_keys_stay_off_v1(admin: Admin) -> None:
    tenant = admin.server.api_key  # type: ignore[attr-defined]
    base = admin.server.base_url
    for method, path, body in ROUTES:
        for headers, status, type_ in [
            ({"Authorization": f"Bearer {tenant}"}, 403, "permission_error"),
            ({}, 401, "authentication_error"),
            ({"Authorization": "Bearer mg-0123456789ab_" + "x" * 43}, 401, "authentication_error"),
        ]:
            r = httpx.request(method, f"{base}/admin/v1{path}", json=body, headers=headers)
            assert (r.status_code, r.json()["error"]["type"]) == (status, type_), (method, path)
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = v1(admin.server, admin.key)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "admin_key_not_allowed"
    r = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {admin.key}"},
    )
    assert r.status_code == 403
    assert v1(admin.server, tenant).status_code == 200


def test_workspace_crud_round_trip(admin: Admin) -> None:
    body = {
        "name": "acme",
        "currency": "EUR",
        "home_region": "eu-west",
        "allowed_regions": ["eu-west", "eu-north", "eu-west"],
        "allowed_jurisdictions": ["ie", "SE", "IE"],
        "limits": {"rpm": 60, "tpm": 100000, "monthly_budget_micros": 5_000_000_000},
    }
    ws = admin.ok("POST", "/workspaces", json=body)
    created_at = datetime.fromisoformat(ws.pop("created_at"))
    assert abs(created_at - datetime.now(UTC)) < timedelta(seconds=30)
    ws_id = ws.pop("id")
    assert ws_id.startswith("ws_")
    assert ws == {
        "object": "workspace",
        "name": "acme",
        "currency": "EUR",
        "home_region": "eu-west",
        "allowed_regions": ["eu-west", "eu-north"],
        "allowed_jurisdictions": ["IE", "SE"],
        "limits": {**LIMITS_NONE, "rpm": 60, "tpm": 100000, "monthly_budget_micros": 5_000_000_000},
    }
    got = admin.ok("GET", f"/workspaces/{ws_id}")
    assert got == admin.ok("GET", "/workspaces/acme")  # by name too
    assert got["id"] == ws_id and got["limits"] == ws["limits"]
    listed = admin.ok("GET", "/workspaces")
    assert listed["object"] == "list"
    assert [w["name"] for w in listed["data"]] == ["default", "admin", "acme"]

    patched = admin.ok(
        "PATCH",
        f"/workspaces/{ws_id}",
        json={"limits": {"rpm": None, "concurrency": 4}, "home_region": "eu-north"},
    )
    assert patched["limits"] == {
        **LIMITS_NONE,
        "tpm": 100000,
        "concurrency": 4,
        "monthly_budget_micros": 5_000_000_000,
    }
    assert (patched["home_region"], patched["allowed_regions"]) == (
        "eu-north",
        ["eu-west", "eu-north"],
    )
    assert admin.ok("GET", f"/workspaces/{ws_id}") == patched
    cleared = admin.ok(
        "PATCH",
        f"/workspaces/{ws_id}",
        json={"allowed_regions": None, "allowed_jurisdictions": None},
    )
    assert cleared["allowed_regions"] is None and cleared["allowed_jurisdictions"] is None

    eu = admin.ok("POST", "/workspaces", json={"name": "eu", "allowed_regions": ["eu-1", "eu-2"]})
    assert eu["home_region"] == "eu-1"  # the first allowed region, not "local"

    for method, path, payload, status, param in [
        ("POST", "/workspaces", {"name": "acme"}, 409, "name"),
        ("POST", "/workspaces", {"name": "b", "currency": "eur"}, 400, "currency"),
        ("POST", "/workspaces", {"name": "b", "rpm": 1}, 400, "rpm"),
        ("POST", "/workspaces", {"name": "b", "limits": {"rpm": -1}}, 400, "limits.rpm"),
        (
            "POST",
            "/workspaces",
            {"name": "b", "home_region": "eu-1", "allowed_regions": ["eu-2"]},
            400,
            "home_region",
        ),
        ("POST", "/workspaces", {"name": "b", "allowed_regions": ["y"]}, 400, "allowed_regions"),
        ("POST", "/workspaces", {"name": "b/c"}, 400, "name"),
        ("POST", "/workspaces", {"name": "ws_0123456789abcdef"}, 400, "name"),
        (
            "POST",
            "/workspaces",
            {"name": "b", "allowed_jurisdictions": ["DE"]},
            400,
            "allowed_jurisdictions",
        ),
        ("PATCH", f"/workspaces/{ws_id}", {"allowed_regions": ["us"]}, 400, "home_region"),
        (
            "PATCH",
            f"/workspaces/{ws_id}",
            {"allowed_jurisdictions": ["E U"]},
            400,
            "allowed_jurisdictions[0]",
        ),
        ("PATCH", "/workspaces/nope", {}, 404, "workspace_id"),
        ("GET", "/workspaces/nope", None, 404, "workspace_id"),
    ]:
        r = admin(method, path, json=payload)
        assert (r.status_code, r.json()["error"]["param"]) == (status, param), r.text
    assert admin.ok("GET", f"/workspaces/{ws_id}") == cleared  # failed changes changed nothing


def _new_workspace(admin: Admin, name: str = "acme", **extra: Any) -> str:
    return str(admin.ok("POST", "/workspaces", json={"name": name, **extra})["id"])


def test_key_create_list_patch_revoke(admin: Admin) -> None:
    ws_id = _new_workspace(admin, allowed_regions=["local", "eu"])
    created = admin.ok(
        "POST",
        f"/workspaces/{ws_id}/keys",
        json={
            "name": "ci",
            "allowed_models": ["fake-model"],
            "allowed_regions": ["local"],
            "expires_in_s": 3600,
            "limits": {"rpm": 100},
        },
    )
    plaintext = created.pop("key")
    assert plaintext.startswith(created["prefix"] + "_")
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(seconds=3590) < expires - datetime.now(UTC) <= timedelta(seconds=3600)
    assert {k: created[k] for k in ("name", "role", "workspace_id", "revoked_at")} == {
        "name": "ci",
        "role": "tenant",
        "workspace_id": ws_id,
        "revoked_at": None,
    }
    assert (created["allowed_models"], created["allowed_regions"]) == (["fake-model"], ["local"])
    assert created["limits"] == {**LIMITS_NONE, "rpm": 100}
    assert v1(admin.server, plaintext).status_code == 200

    listing = admin("GET", "/keys", params={"workspace_id": ws_id})
    assert listing.json()["data"] == [created]
    everything = admin("GET", "/keys").text
    secret_hash = hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext not in everything and secret_hash not in everything
    assert '"key"' not in everything and "secret" not in everything
    assert admin.ok("GET", f"/keys/{created['id']}") == created
    assert admin.ok("GET", f"/keys/{created['prefix']}") == created
    whole = admin("GET", f"/keys/{plaintext}")  # the secret has no place in a URL
    assert (whole.status_code, whole.json()["error"]["param"]) == (400, "key_id")
    assert plaintext.split("_", 1)[1] not in whole.text

    patched = admin.ok(
        "PATCH",
        f"/keys/{created['id']}",
        json={"allowed_models": None, "limits": {"tpm": 5000}, "name": "ci-2"},
    )
    assert patched == {
        **created,
        "name": "ci-2",
        "allowed_models": None,
        "limits": {**LIMITS_NONE, "rpm": 100, "tpm": 5000},
    }
    r = admin("PATCH", f"/keys/{created['id']}", json={"allowed_regions": ["us"]})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "allowed_regions")
    r = admin("POST", f"/workspaces/{ws_id}/keys", json={"expires_at": "2001-01-01T00:00:00Z"})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "expires_at")
    r = admin(
        "POST",
        f"/workspaces/{ws_id}/keys",
        json={"expires_at": "2099-01-01T00:00:00Z", "expires_in_s": 5},
    )
    assert r.status_code == 400
    assert admin("POST", "/workspaces/nope/keys", json={}).status_code == 404

    revoked = admin.ok("DELETE", f"/keys/{created['id']}")
    assert revoked["revoked_at"] is not None
    r = v1(admin.server, plaintext)  # immediately refused
    assert (r.status_code, r.json()["error"]["code"]) == (401, "revoked_api_key")
    assert admin.ok("DELETE", f"/keys/{created['id']}") == revoked  # idempotent
    assert admin.ok("GET", "/keys", params={"workspace_id": ws_id})["data"] == []
    everyone = admin.ok("GET", "/keys", params={"workspace_id": ws_id, "include_revoked": True})
    assert everyone["data"] == [revoked]
    r = admin("PATCH", f"/keys/{created['id']}", json={"name": "x"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "key_revoked")
    assert admin("DELETE", "/keys/mg-000000000000").status_code == 404


def test_rotate_keeps_scopes_and_limits_and_revokes_the_old_key(admin: Admin) -> None:
    ws_id = _new_workspace(admin)
    old = admin.ok(
        "POST",
        f"/workspaces/{ws_id}/keys",
        json={
            "name": "svc",
            "allowed_models": ["fake-model"],
            "limits": {"rpm": 7, "concurrency": 2},
        },
    )
    new = admin.ok("POST", f"/keys/{old['id']}/rotate")
    assert new["id"] != old["id"] and new["key"] != old["key"]
    same = (
        "name",
        "role",
        "workspace_id",
        "allowed_models",
        "allowed_regions",
        "limits",
        "expires_at",
    )
    assert {k: new[k] for k in same} == {k: old[k] for k in same}
    assert v1(admin.server, old["key"]).status_code == 401
    assert v1(admin.server, new["key"]).status_code == 200
    assert admin.ok("GET", f"/keys/{old['id']}")["revoked_at"] is not None
    r = admin("POST", f"/keys/{old['id']}/rotate")
    assert (r.status_code, r.json()["error"]["code"]) == (400, "key_revoked")
    newer = admin.ok("POST", f"/keys/{new['id']}/rotate", json={"expires_in_s": 60})
    assert newer["expires_at"] is not None and newer["limits"] == old["limits"]


def test_key_scope_set_by_admin_is_enforced(admin: Admin) -> None:
    ws_id = _new_workspace(admin)
    key = admin.ok("POST", f"/workspaces/{ws_id}/keys", json={"allowed_models": ["other"]})["key"]
    r = httpx.post(
        f"{admin.server.base_url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 403


def test_prices_are_append_only_and_never_backdated(admin: Admin) -> None:
    soon = datetime.now(UTC) + timedelta(days=1)
    first = admin.ok(
        "POST",
        "/prices",
        json={"model": "m1", "input_micros_per_1m": 500_000, "output_micros_per_1m": 1_500_000},
    )
    assert first["cached_input_micros_per_1m"] == 500_000  # defaults to the input price
    assert first["region"] is None and first["currency"] == "USD"
    assert abs(datetime.fromisoformat(first["effective_from"]) - datetime.now(UTC)) < timedelta(
        seconds=30
    )
    second = admin.ok(
        "POST",
        "/prices",
        json={
            "model": "m1",
            "region": "eu",
            "currency": "EUR",
            "input_micros_per_1m": 400_000,
            "cached_input_micros_per_1m": 100_000,
            "output_micros_per_1m": 1_200_000,
            "effective_from": soon.isoformat(),
        },
    )
    assert datetime.fromisoformat(second["effective_from"]) == soon
    admin.ok(
        "POST", "/prices", json={"model": "m2", "input_micros_per_1m": 1, "output_micros_per_1m": 2}
    )
    listed = admin.ok("GET", "/prices", params={"model": "m1"})["data"]
    assert listed == [first, second]  # both kept: a new entry, never an update
    assert len(admin.ok("GET", "/prices")["data"]) == 3
    r = admin(
        "POST",
        "/prices",
        json={
            "model": "m1",
            "input_micros_per_1m": 1,
            "output_micros_per_1m": 1,
            "effective_from": "2020-01-01T00:00:00Z",
        },
    )
    assert (r.status_code, r.json()["error"]["param"]) == (400, "effective_from")
    r = admin(
        "POST",
        "/prices",
        json={"model": "m1", "input_micros_per_1m": -1, "output_micros_per_1m": 1},
    )
    assert (r.status_code, r.json()["error"]["param"]) == (400, "input_micros_per_1m")


def test_usage_pages_and_totals(admin: Admin) -> None:
    ws_id = _new_workspace(admin)
    t0 = datetime(2026, 3, 10, 12, tzinfo=UTC)
    rows = [
        usage_row(
            f"r{i}",
            t0 + timedelta(minutes=i // 2),
            workspace_id=ws_id,
            model="m1",
            prompt_tokens=10 + i,
            cached_tokens=i,
            completion_tokens=5,
            cost_micros=1000 + i,
            currency="USD",
        )
        for i in range(5)
    ]
    rows.append(usage_row("other-ws", t0, workspace_id="ws_other", cost_micros=99, currency="USD"))
    rows.append(
        usage_row(
            "feb",
            datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC),
            workspace_id=ws_id,
            cost_micros=7,
            currency="USD",
        )
    )
    rows.append(usage_row("unpriced", t0 + timedelta(hours=1), workspace_id=ws_id, prompt_tokens=3))
    with_sessions(admin.url, lambda s: insert_usage(s, rows))

    seen: list[str] = []
    after = None
    while True:
        params = {"workspace_id": ws_id, "month": "2026-03", "limit": 2}
        page = admin.ok("GET", "/usage", params=params | ({"after": after} if after else {}))
        seen += [r["request_id"] for r in page["data"]]
        assert page["totals"] == {
            "requests": 6,
            "prompt_tokens": 10 + 11 + 12 + 13 + 14 + 3,
            "cached_tokens": 0 + 1 + 2 + 3 + 4,
            "completion_tokens": 25,
            "cost_micros": {"USD": 5010},
        }
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == ["r0", "r1", "r2", "r3", "r4", "unpriced"]
    first = admin.ok(
        "GET", "/usage", params={"workspace_id": ws_id, "month": "2026-03", "limit": 1}
    )
    row = first["data"][0]
    assert row["created_at"] == "2026-03-10T12:00:00Z"
    assert (row["prompt_tokens"], row["cost_micros"], row["currency"]) == (10, 1000, "USD")
    everything = admin.ok("GET", "/usage")
    assert everything["totals"]["requests"] == 8
    assert everything["totals"]["cost_micros"] == {"USD": 5010 + 99 + 7}
    for params, param in [({"month": "2026-13"}, "month"), ({"limit": 0}, "limit")]:
        r = admin("GET", "/usage", params=params)
        assert (r.status_code, r.json()["error"]["param"]) == (400, param)
    for after in ("99999999999999999999999", "-5", "r"):  # no such record: no page, not page 1
        r = admin("GET", "/usage", params={"after": after, "limit": 2})
        assert (r.status_code, r.json()["error"]["param"]) == (404, "after"), after


def test_invoice_json_and_csv(admin: Admin) -> None:
    ws_id = _new_workspace(admin, currency="USD")
    mar = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [
        usage_row(
            "a",
            mar,
            workspace_id=ws_id,
            model="m1",
            region="eu",
            prompt_tokens=100,
            cached_tokens=40,
            completion_tokens=10,
            cost_micros=123_456,
            currency="USD",
        ),
        usage_row(
            "b",
            mar + timedelta(days=30, hours=23, minutes=59, seconds=59, microseconds=999_999),
            workspace_id=ws_id,
            model="m1",
            region="eu",
            prompt_tokens=1,
            completion_tokens=2,
            cost_micros=1_000_001,
            currency="USD",
        ),
        usage_row(
            "c",
            mar + timedelta(days=2),
            workspace_id=ws_id,
            model="m0",
            prompt_tokens=7,
            completion_tokens=3,
            cost_micros=5,
            currency="USD",
        ),
        usage_row(
            "april",
            datetime(2026, 4, 1, tzinfo=UTC),
            workspace_id=ws_id,
            model="m1",
            cost_micros=1_000_000_000,
            currency="USD",
        ),
    ]
    with_sessions(admin.url, lambda s: insert_usage(s, rows))
    inv = admin.ok("GET", f"/workspaces/{ws_id}/invoices/2026-03")
    assert inv == {
        "object": "invoice",
        "workspace_id": ws_id,
        "workspace_name": "acme",
        "month": "2026-03",
        "period_start": "2026-03-01T00:00:00Z",
        "period_end": "2026-04-01T00:00:00Z",
        "currency": "USD",
        "lines": [
            {
                "model": "m0",
                "region": None,
                "currency": "USD",
                "requests": 1,
                "prompt_tokens": 7,
                "cached_tokens": 0,
                "completion_tokens": 3,
                "cost_micros": 5,
                "batch": False,
            },
            {
                "model": "m1",
                "region": "eu",
                "currency": "USD",
                "requests": 2,
                "prompt_tokens": 101,
                "cached_tokens": 40,
                "completion_tokens": 12,
                "cost_micros": 1_123_457,
                "batch": False,
            },
        ],
        "requests": 3,
        "prompt_tokens": 108,
        "cached_tokens": 40,
        "completion_tokens": 15,
        "total_cost_micros": 1_123_462,
        "totals_by_currency": {"USD": 1_123_462},
    }
    r = admin("GET", "/workspaces/acme/invoices/2026-03", params={"format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert (
        r.content
        == (
            "kind,workspace_id,month,model,region,currency,requests,prompt_tokens,cached_tokens,"
            "completion_tokens,cost_micros,cost\r\n"
            f"line,{ws_id},2026-03,m0,,USD,1,7,0,3,5,0.000005\r\n"
            f"line,{ws_id},2026-03,m1,eu,USD,2,101,40,12,1123457,1.123457\r\n"
            f"total,{ws_id},2026-03,,,USD,3,108,40,15,1123462,1.123462\r\n"
        ).encode()
    )
    for path, status in [
        (f"/workspaces/{ws_id}/invoices/2026-3", 400),
        ("/workspaces/nope/invoices/2026-03", 404),
    ]:
        assert admin("GET", path).status_code == status
    assert (
        admin("GET", f"/workspaces/{ws_id}/invoices/2026-03", params={"format": "pdf"}).status_code
        == 400
    )


def test_every_change_is_audited_without_secrets(admin: Admin) -> None:
    ws_id = _new_workspace(admin)
    admin.ok("PATCH", f"/workspaces/{ws_id}", json={"limits": {"rpm": 5}})
    admin.ok("PATCH", f"/workspaces/{ws_id}", json={"limits": {"rpm": 5}})  # no change: no entry
    key = admin.ok("POST", f"/workspaces/{ws_id}/keys", json={"name": "k", "limits": {"tpm": 9}})
    admin.ok("PATCH", f"/keys/{key['id']}", json={"limits": {"tpm": None}})
    rotated = admin.ok("POST", f"/keys/{key['id']}/rotate")
    admin.ok("DELETE", f"/keys/{rotated['id']}")
    price = admin.ok(
        "POST", "/prices", json={"model": "m", "input_micros_per_1m": 3, "output_micros_per_1m": 4}
    )

    r = admin("GET", "/audit")
    entries = r.json()["data"]
    mine = [e for e in entries if e["actor"] == admin.prefix]
    assert [(e["action"], e["target"]) for e in reversed(mine)] == [
        ("workspace.create", f"workspace:{ws_id}"),
        ("workspace.update", f"workspace:{ws_id}"),
        ("key.create", f"api_key:{key['id']}"),
        ("key.update", f"api_key:{key['id']}"),
        ("key.rotate", f"api_key:{key['id']}"),
        ("key.revoke", f"api_key:{rotated['id']}"),
        ("price.create", f"price:{price['id']}"),
    ]
    # the rest: the test's own keys, made as the CLI makes them (their workspaces too)
    assert {e["actor"] for e in entries} == {admin.prefix, "cli:test"}
    assert len(entries) - len(mine) == 4
    by_action = {e["action"]: e for e in mine}
    assert by_action["workspace.update"]["details"] == {"limits.rpm": {"from": None, "to": 5}}
    assert by_action["key.update"]["details"] == {"limits.tpm": {"from": 9, "to": None}}
    assert by_action["key.rotate"]["details"]["new_key_id"] == rotated["id"]
    assert by_action["key.create"]["details"]["limits"] == {"tpm": 9}
    assert by_action["price.create"]["details"]["input_micros_per_1m"] == 3
    for e in entries:
        assert abs(datetime.fromisoformat(e["at"]) - datetime.now(UTC)) < timedelta(seconds=60)
    for secret in (key["key"], rotated["key"], admin.key):
        assert secret not in r.text
        assert hashlib.sha256(secret.encode()).hexdigest() not in r.text
    page = admin.ok("GET", "/audit", params={"limit": 2})
    assert [e["id"] for e in page["data"]] == [entries[0]["id"], entries[1]["id"]]
    assert page["has_more"] is True
    assert (page["first_id"], page["last_id"]) == (str(entries[0]["id"]), str(entries[1]["id"]))
    older = admin.ok("GET", "/audit", params={"limit": 100, "before": page["last_id"]})
    assert older["data"] == entries[2:] and older["has_more"] is False
    assert older["last_id"] == str(entries[-1]["id"])
    assert admin.ok("GET", "/audit", params={"before": ""}) == r.json()  # no cursor
    r_after = admin("GET", "/audit", params={"after": "zzz"})  # pages with 'before' only
    assert (r_after.status_code, r_after.json()["error"]) == (
        400,
        {
            "message": "'after' is not supported on this list: it lists the newest items first; "
            "page to older ones with 'before' (the previous page's last_id).",
            "type": "invalid_request_error",
            "param": "after",
            "code": "unsupported_parameter",
        },
    )
    assert admin.ok("GET", "/audit", params={"after": ""}) == r.json()
    r_bad = admin("GET", "/audit", params={"before": "abc"})
    assert (r_bad.status_code, r_bad.json()["error"]["param"]) == (400, "before")
    assert r_bad.json()["error"]["message"] == (
        f"'before' must be an audit entry id, 1 to {2**63 - 1}."
    )
    for before in ("99999999999999999999", "-99999999999999999999", "0"):  # no row's id: 400
        r = admin("GET", "/audit", params={"before": before})
        assert (r.status_code, r.json()["error"]["param"]) == (400, "before"), before
    only = admin.ok("GET", "/audit", params={"action": "key.revoke"})["data"]
    assert [e["target"] for e in only] == [f"api_key:{rotated['id']}"]


def test_a_metered_request_shows_in_usage_and_invoice(admin: Admin) -> None:
    tenant = admin.server.api_key  # type: ignore[attr-defined]
    r = httpx.post(
        f"{admin.server.base_url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": "What is it?"}]},
        headers={"Authorization": f"Bearer {tenant}"},
    )
    assert r.status_code == 200
    (row,) = usage_rows(admin.server, expect=1)
    page = admin.ok("GET", "/usage", params={"workspace_id": row["workspace_id"]})
    assert [u["request_id"] for u in page["data"]] == [row["request_id"]]
    month = f"{datetime.now(UTC):%Y-%m}"
    inv = admin.ok("GET", f"/workspaces/default/invoices/{month}")
    assert (inv["requests"], inv["prompt_tokens"]) == (1, row["prompt_tokens"])
    assert inv["total_cost_micros"] == row["cost_micros"]


def test_a_body_without_the_json_content_type_says_so(admin: Admin) -> None:
    r = httpx.post(
        f"{admin.server.base_url}/admin/v1/workspaces",
        content=b'{"name": "x"}',
        headers={"Authorization": f"Bearer {admin.key}", "content-type": "text/plain"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        "Send the request body as JSON, with 'Content-Type: application/json'."
    )


def test_a_nul_character_is_never_a_500(admin: Admin) -> None:
    """PostgreSQL stores no NUL in text (SQLite does): a 400 there, never a 500."""
    postgres = "postgresql" in admin.server.settings.database_url
    r = admin("GET", "/audit?action=a%00b")
    assert r.status_code == (400 if postgres else 200), r.text
    if postgres:
        assert r.json()["error"]["code"] == "invalid_request"
    r = admin("POST", "/workspaces", json={"name": "a\u0000b"})  # a name refuses it anywhere
    assert (r.status_code, r.json()["error"]["param"]) == (400, "name"), r.text


def test_workspace_key_and_price_lists_page(admin: Admin) -> None:
    """``limit`` in 1..1000 (else a 400 naming it), ``after`` the previous page's last id (an
    unknown one a 404 naming it); ``before`` refused (these lists page forward only)."""
    for name in ("ws-a", "ws-b"):
        admin.ok("POST", "/workspaces", json={"name": name})
        admin.ok("POST", f"/workspaces/{name}/keys", json={"name": name})
    for model in ("m0", "m1"):
        body = {"model": model, "input_micros_per_1m": 1, "output_micros_per_1m": 2}
        admin.ok("POST", "/prices", json=body)
    for path in ("/workspaces", "/keys", "/prices"):
        everything = admin.ok("GET", path)
        ids = [x["id"] for x in everything["data"]]
        assert len(ids) >= 2 and everything["has_more"] is False, path
        assert (everything["first_id"], everything["last_id"]) == (str(ids[0]), str(ids[-1]))
        first = admin.ok("GET", path, params={"limit": 1})
        assert ([x["id"] for x in first["data"]], first["has_more"]) == (ids[:1], True), path
        assert list(first) == ["object", "data", "first_id", "last_id", "has_more"], path
        assert (first["first_id"], first["last_id"]) == (str(ids[0]), str(ids[0])), path
        rest = admin.ok("GET", path, params={"after": first["last_id"], "limit": 1000})
        assert ([x["id"] for x in rest["data"]], rest["has_more"]) == (ids[1:], False), path
        assert rest["last_id"] == str(ids[-1]), path
        assert admin.ok("GET", path, params={"after": ""}) == everything, path
        for params, status, param in [
            ({"limit": 0}, 400, "limit"),
            ({"limit": 1001}, 400, "limit"),
            ({"limit": "x"}, 400, "limit"),
            ({"after": "nope"}, 404, "after"),
            ({"before": str(ids[-1])}, 400, "before"),
        ]:
            r = admin("GET", path, params=params)
            assert (r.status_code, r.json()["error"]["param"]) == (status, param), (path, params)
        r = admin("GET", path, params={"after": "zzz"})
        noun = {"/workspaces": "workspace", "/keys": "key", "/prices": "price"}[path]
        assert r.json()["error"]["code"] == f"{noun}_not_found", path
    empty = admin.ok("GET", "/prices", params={"model": "nobody"})
    assert empty == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
