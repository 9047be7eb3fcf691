"""The console's admin pages over HTTP: who sees what (operator, workspace member, key
holder), another workspace's URLs (404), and the changes each page makes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console.helpers import landing, make_key, request_statements, sign_in
from tests.databases import BOTH_DATABASES
from tests.support import ThreadServer, db_rows, write_topology


@pytest.fixture
def server(server_factory, tmp_path: Path) -> ThreadServer:  # type: ignore[no-untyped-def]
    write_topology(
        tmp_path / "topology.toml", {"local": "", "eu-west": "IE"}, ["m"], gateway="local"
    )
    return server_factory()  # type: ignore[no-any-return]


def key_prefixes(html: str) -> set[str]:
    return set(re.findall(r'<tr id="key-[0-9a-f]{12}" data-prefix="(mg-[0-9a-f]{12})"', html))


def test_each_sees_only_what_they_may(server: ThreadServer) -> None:
    acme = make_key(server, name="acme-member", workspace="acme")
    globex = make_key(server, name="globex-member", workspace="globex")
    admin = make_key(server, role="admin", workspace="admin")
    operator = sign_in(server, admin)
    member = sign_in(server, acme)
    # a key narrowed to one region: a key holder, not a member
    created = member.post("/keys", {"name": "narrow", "allowed_regions": "eu-west"})
    narrow_secret = re.search(r'id="new-secret">([^<]+)<', created.text).group(1)  # type: ignore[union-attr]
    narrow_id = narrow_secret[3:15]

    all_keys = key_prefixes(operator.get("/keys").text)
    assert {acme.prefix, globex.prefix, admin.prefix, f"mg-{narrow_id}"} <= all_keys
    acme_keys = key_prefixes(member.get("/keys").text)
    assert acme_keys == {acme.prefix, f"mg-{narrow_id}"}

    from tests.support import NewKey

    holder = sign_in(server, NewKey(narrow_id, f"mg-{narrow_id}", acme.workspace_id, narrow_secret))
    page = holder.get("/keys")
    assert key_prefixes(page.text) == {f"mg-{narrow_id}"}
    assert "Create a key" not in page.text
    assert (
        'href="/console/audit"' not in page.text and 'href="/console/workspaces"' not in page.text
    )
    assert holder.get("/audit").status_code == 404
    assert holder.get("/workspaces").status_code == 404
    assert holder.get(f"/keys/{acme.key_id}").status_code == 404  # a sibling key
    assert holder.post(f"/keys/{acme.key_id}/revoke").status_code == 404

    ws_page = member.get("/workspaces")
    assert ws_page.status_code == 200
    assert f'id="ws-{acme.workspace_id}"' in ws_page.text
    assert f'id="ws-{globex.workspace_id}"' not in ws_page.text
    assert "Create a workspace" not in ws_page.text
    ops = operator.get("/workspaces").text
    assert f'id="ws-{acme.workspace_id}"' in ops and f'id="ws-{globex.workspace_id}"' in ops


def test_another_workspaces_urls_are_404(server: ThreadServer) -> None:
    acme = make_key(server, name="acme-member", workspace="acme")
    globex = make_key(server, name="globex-member", workspace="globex")
    member = sign_in(server, acme)
    assert member.get(f"/keys/{globex.key_id}").status_code == 404
    assert member.get(f"/keys/{globex.prefix}").status_code == 404
    assert member.get(f"/workspaces/{globex.workspace_id}").status_code == 404
    assert member.get("/workspaces/globex").status_code == 404  # by name too
    for action in ("revoke", "rotate"):
        r = member.post(f"/keys/{globex.key_id}/{action}")
        assert r.status_code == 404, action
    assert db_rows(server, "SELECT revoked_at FROM api_keys WHERE id = :k", k=globex.key_id) == [
        {"revoked_at": None}
    ]
    assert member.post(f"/workspaces/{acme.workspace_id}", {"rpm": "1"}).status_code == 404
    assert member.get(f"/keys/{acme.key_id}").status_code == 200
    assert member.get(f"/workspaces/{acme.workspace_id}").status_code == 200


def test_operator_manages_workspaces_and_prices(server: ThreadServer) -> None:
    operator = sign_in(server, make_key(server, role="admin", workspace="admin"))
    r = operator.post(
        "/workspaces", {"name": "initech", "allowed_regions": "eu-west", "rpm": "120"}
    )
    assert r.status_code == 303, r.text
    ws_id = r.headers["location"].removeprefix("/console/workspaces/")
    (row,) = db_rows(
        server,
        "SELECT name, home_region, allowed_regions, rpm_limit FROM workspaces WHERE id = :w",
        w=ws_id,
    )
    regions = row.pop("allowed_regions")  # JSON: text on SQLite, decoded on PostgreSQL
    assert (json.loads(regions) if isinstance(regions, str) else regions) == ["eu-west"]
    assert row == {"name": "initech", "home_region": "eu-west", "rpm_limit": 120}
    r = operator.post(
        f"/workspaces/{ws_id}",
        {"home_region": "eu-west", "allowed_regions": "eu-west", "tpm": "5000"},
    )
    assert r.status_code == 303
    row = db_rows(server, "SELECT rpm_limit, tpm_limit FROM workspaces WHERE id = :w", w=ws_id)
    assert row == [{"rpm_limit": 120, "tpm_limit": 5000}]  # a limit the form leaves out stays
    r = operator.post(
        f"/workspaces/{ws_id}", {"home_region": "eu-west", "allowed_regions": "eu-west", "rpm": ""}
    )
    assert r.status_code == 303
    row = db_rows(server, "SELECT rpm_limit, tpm_limit FROM workspaces WHERE id = :w", w=ws_id)
    assert row == [{"rpm_limit": None, "tpm_limit": 5000}]  # an empty one is unlimited
    # an unset monthly budget reads "unlimited" like the other unset limits (was "—")
    page = operator.get(f"/workspaces/{ws_id}").text
    assert "<dt>Monthly budget</dt><dd>unlimited</dd>" in page
    assert "<dt>Monthly tokens</dt><dd>unlimited</dd>" in page
    listed = operator.get("/workspaces").text
    assert '<td class="num">unlimited</td>\n    <td class="num">unlimited</td>' in listed
    assert '<link rel="icon" href="data:image/svg+xml,' in listed  # no /favicon.ico request
    bad = operator.post("/workspaces", {"name": "x", "allowed_regions": "mars"})
    assert bad.status_code == 400
    assert "Unknown region &#39;mars&#39;" in bad.text

    r = operator.post(
        "/prices", {"model": "m", "input_micros_per_1m": "150000", "output_micros_per_1m": "600000"}
    )
    assert r.status_code == 303, r.text
    page = operator.get("/prices").text
    assert "0.150000" in page and "0.600000" in page
    member = sign_in(server, make_key(server, workspace="acme"))
    assert "0.150000" in member.get("/prices").text  # tenants read the book
    assert (
        member.post(
            "/prices", {"model": "m", "input_micros_per_1m": "1", "output_micros_per_1m": "1"}
        ).status_code
        == 404
    )
    assert member.post("/workspaces", {"name": "mine"}).status_code == 404
    assert db_rows(server, "SELECT count(*) AS n FROM prices") == [{"n": 1}]


@BOTH_DATABASES
def test_audit_is_scoped_newest_first_and_paged(server: ThreadServer) -> None:
    acme = make_key(server, name="acme-member", workspace="acme")
    globex = make_key(server, name="globex-member", workspace="globex")
    operator = sign_in(server, make_key(server, role="admin", workspace="admin"))
    member = sign_in(server, acme)
    for i in range(3):
        assert member.post("/keys", {"name": f"k{i}"}).status_code == 200
    operator.post(f"/keys/{globex.key_id}/revoke")

    page = member.get("/audit").text
    ids = [int(i) for i in re.findall(r'<tr id="audit-(\d+)">', page)]
    assert ids == sorted(ids, reverse=True)
    rows = db_rows(server, "SELECT id, action, workspace_id FROM audit_log ORDER BY id DESC")
    mine = [r["id"] for r in rows if r["workspace_id"] == acme.workspace_id]
    assert ids == mine
    assert f"api_key:{globex.key_id}" not in page
    # the operator filters by workspace and action
    ops = operator.get(
        "/audit", params={"workspace": globex.workspace_id, "action": "key.revoke"}
    ).text
    assert re.findall(r'<tr id="audit-(\d+)">', ops) == [
        str(r["id"])
        for r in rows
        if r["workspace_id"] == globex.workspace_id and r["action"] == "key.revoke"
    ]
    # a member cannot widen its scope through the URL
    widened = member.get("/audit", params={"workspace": globex.workspace_id}).text
    assert re.findall(r'<tr id="audit-(\d+)">', widened) == [str(i) for i in ids]


@BOTH_DATABASES
def test_each_page_is_a_handful_of_statements(
    server_factory: Any, settings_factory: Any, tmp_path: Path
) -> None:
    """Statements per page load once the key's principal is cached (counted on the gateway's
    database engine; the cache trusts an entry 5 minutes here, so a slow run reads the same)."""
    write_topology(tmp_path / "topology.toml", {"local": ""}, ["m"], gateway="local")
    settings = settings_factory(auth={"cache_ttl_s": 300})
    settings.metering.prices_refresh_s = 3600  # no price-book reload during the count
    server = server_factory(settings=settings)
    operator = sign_in(server, make_key(server, role="admin", workspace="admin"))
    member = sign_in(server, make_key(server, workspace="acme"))
    for i in range(30):  # more rows change nothing
        make_key(server, name=f"k{i}", workspace="acme")
    measured = {}
    with request_statements(server) as statements:
        for who, signed in (("operator", operator), ("member", member)):
            for path in ("/keys", "/workspaces", "/prices", "/audit", f"/keys/{signed.key.key_id}"):
                assert signed.get(path).status_code == 200  # warms the principal cache
                statements.clear()
                assert signed.get(path).status_code == 200
                measured[who, path.split("/")[1] + ("/id" if path.count("/") > 1 else "")] = len(
                    statements
                )
    # one for the session (with its key), then the page's own reads
    assert measured == {
        ("operator", "keys"): 4,  # session, workspaces, keys, last use
        ("operator", "workspaces"): 2,
        ("operator", "prices"): 2,
        ("operator", "audit"): 3,  # session, entries, the filter's workspaces
        ("operator", "keys/id"): 3,  # session, key, last use
        ("member", "keys"): 4,  # session, the workspace (by id), keys, last use
        ("member", "workspaces"): 2,
        ("member", "prices"): 2,
        ("member", "audit"): 2,
        ("member", "keys/id"): 3,
    }


def test_long_key_lists_are_cut_newest_first(
    server: ThreadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("modelgrid.console.pages.keys.MAX_SHOWN", 3)
    member = sign_in(server, make_key(server, name="first", workspace="acme"))
    made = [make_key(server, name=f"k{i}", workspace="acme") for i in range(4)]
    page = member.get("/keys").text
    shown = re.findall(r'<tr id="key-[0-9a-f]{12}" data-prefix="(mg-[0-9a-f]{12})"', page)
    assert shown == [k.prefix for k in reversed(made)][:3]
    assert "Showing 3 of 5 keys." in page


def test_the_console_root_leads_to_a_page(server: ThreadServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        r = http.get("/console")
        assert (r.status_code, r.headers["location"]) == (307, f"{server.base_url}/console/")
        r = http.get("/console/")
        assert (r.status_code, r.headers["location"]) == (303, "/console/login")
    member = sign_in(server, make_key(server, workspace="acme"))
    r = member.get("/")
    assert (r.status_code, r.headers["location"]) == (303, landing("member"))
    r = member.get("/login")  # signed in already
    assert (r.status_code, r.headers["location"]) == (303, landing("member"))
    bad = member.get("/audit", params={"before": "abc"})
    assert bad.status_code == 400
    assert "Invalid before" in bad.text
    huge = member.get("/audit", params={"before": "99999999999999999999"})  # was a 500
    assert huge.status_code == 400 and "audit entry id" in huge.text


def test_rotate_shows_the_new_secret_once_and_revokes_the_old(server: ThreadServer) -> None:
    member = sign_in(server, make_key(server, name="owner", workspace="acme"))
    old = make_key(server, name="ci", workspace="acme")
    r = member.post(f"/keys/{old.key_id}/rotate")
    assert r.status_code == 200, r.text
    secret = re.search(r'id="new-secret">(mg-[0-9a-f]{12}_[^<]+)<', r.text)
    assert secret is not None
    new_id = secret.group(1)[3:15]
    rows = db_rows(
        server,
        "SELECT id, name, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE name = 'ci'"
        " ORDER BY created_at",
    )
    assert [(row["id"], row["name"], bool(row["revoked"])) for row in rows] == [
        (old.key_id, "ci", True),
        (new_id, "ci", False),
    ]
    again = member.post(f"/keys/{old.key_id}/rotate")  # a revoked key cannot be rotated
    assert again.status_code == 400
    assert f"API key {old.prefix} is revoked." in again.text
    ok = httpx.get(
        f"{server.base_url}/v1/models", headers={"Authorization": f"Bearer {secret.group(1)}"}
    )
    assert ok.status_code == 200


def test_operator_creates_an_admin_key_in_any_workspace(server: ThreadServer) -> None:
    acme = make_key(server, workspace="acme")
    operator = sign_in(server, make_key(server, role="admin", workspace="admin"))
    r = operator.post("/keys", {"name": "ops", "role": "admin", "workspace": acme.workspace_id})
    assert r.status_code == 200, r.text
    assert db_rows(server, "SELECT workspace_id, role FROM api_keys WHERE name = 'ops'") == [
        {"workspace_id": acme.workspace_id, "role": "admin"}
    ]
    bad = operator.post("/keys", {"name": "x", "workspace": "nowhere"})
    assert bad.status_code == 404
    assert "No workspace &#39;nowhere&#39;." in bad.text
    narrow = operator.post(
        "/keys", {"name": "y", "workspace": acme.workspace_id, "allowed_models": "nope"}
    )
    assert narrow.status_code == 400
    assert "Unknown model &#39;nope&#39;" in narrow.text


def test_a_member_cannot_rotate_or_revoke_an_admin_key_of_its_workspace(
    server: ThreadServer,
) -> None:
    member_key = make_key(server, name="owner", workspace="acme")
    admin = make_key(server, name="ops", role="admin", workspace="acme")
    member = sign_in(server, member_key)
    listed = member.get("/keys")
    row = listed.text.split(f'id="key-{admin.key_id}"')[1].split("</tr>")[0]
    assert "/rotate" not in row and "/revoke" not in row  # no forms offered
    for action in ("rotate", "revoke"):
        refused = member.post(f"/keys/{admin.key_id}/{action}")
        assert refused.status_code == 403, refused.text
        assert "Only an operator may rotate or revoke an admin key." in refused.text
    rows = db_rows(server, "SELECT revoked_at FROM api_keys WHERE name = 'ops'")
    assert rows == [{"revoked_at": None}]
    still = httpx.get(
        f"{server.base_url}/admin/v1/workspaces",
        headers={"Authorization": f"Bearer {admin.plaintext}"},
    )
    assert still.status_code == 200
