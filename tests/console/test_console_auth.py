"""The console's sign-in, sessions, CSRF and who-sees-what, over HTTP (httpx, no browser)."""

from __future__ import annotations

import re
import time
from datetime import datetime

import httpx
import pytest

from modelgrid.console.security import PRE_COOKIE, SESSION_COOKIE, session_hash
from tests.console.helpers import csrf_of, landing, make_key, sign_in, sign_in_response
from tests.databases import BOTH_DATABASES
from tests.support import ThreadServer, db_execute, db_rows


@pytest.fixture
def server(fake_server: ThreadServer) -> ThreadServer:
    return fake_server


def test_sign_in_sets_a_session_cookie_and_lands_on_a_page(server: ThreadServer) -> None:
    admin = make_key(server, role="admin", workspace="admin")
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        r = sign_in_response(http, admin.plaintext)
        assert r.status_code == 303
        assert r.headers["location"] == landing("operator")
        cookie = next(
            c for c in r.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")
        )
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "path", "samesite", "max-age"} <= attrs
        assert "Path=/console" in cookie and "SameSite=lax" in cookie
        assert "secure" not in attrs  # plain http here; https sets it
        session_id = http.cookies[SESSION_COOKIE]
    rows = db_rows(server, "SELECT id_hash, api_key_id FROM console_sessions")
    assert rows == [{"id_hash": session_hash(session_id), "api_key_id": admin.key_id}]
    audit = db_rows(
        server,
        "SELECT actor, action, target, workspace_id FROM audit_log WHERE action = 'console.sign_in'",
    )
    assert audit == [
        {
            "actor": admin.prefix,
            "action": "console.sign_in",
            "target": f"api_key:{admin.key_id}",
            "workspace_id": admin.workspace_id,
        }
    ]


def test_pages_need_a_session(server: ThreadServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        r = http.get("/console/keys")
        assert r.status_code == 303
        assert r.headers["location"] == "/console/login?next=/console/keys"
        r = http.get("/console/keys", headers={"HX-Request": "true"})
        assert (r.status_code, r.headers["hx-redirect"]) == (
            200,
            "/console/login?next=/console/keys",
        )
    with httpx.Client(
        base_url=server.base_url, timeout=10, cookies={SESSION_COOKIE: "not-a-session"}
    ) as forged:
        assert forged.get("/console/keys").status_code == 303


def test_wrong_key_is_refused_then_rate_limited(server: ThreadServer) -> None:
    good = make_key(server, name="good")
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        for _ in range(5):
            r = sign_in_response(http, good.plaintext[:-2] + "xx")
            assert r.status_code == 401
            assert "That key was not accepted." in r.text
            assert SESSION_COOKIE not in http.cookies
        r = sign_in_response(http, good.plaintext)  # the right key, but too late
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "Too many failed sign-ins" in r.text
    assert db_rows(server, "SELECT count(*) AS n FROM console_sessions") == [{"n": 0}]


def test_sign_in_form_needs_its_token(server: ThreadServer) -> None:
    key = make_key(server)
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        http.get("/console/login")
        r = http.post("/console/login", data={"csrf_token": "forged", "key": key.plaintext})
        assert r.status_code == 403
        assert "security token" in r.text
        r = http.post("/console/login", data={"key": key.plaintext})
        assert r.status_code == 403


def test_forged_or_missing_csrf_token_is_403_and_changes_nothing(server: ThreadServer) -> None:
    member = sign_in(server, make_key(server, name="member"))
    other = sign_in(server, make_key(server, name="other"))  # a valid token of another session
    before = db_rows(server, "SELECT count(*) AS n FROM api_keys")
    forged = member.http.post("/console/keys", data={"csrf_token": "0" * 64, "name": "x"})
    assert forged.status_code == 403
    assert '<div class="notice error" role="alert" data-status="403">' in forged.text
    missing = member.http.post("/console/keys", data={"name": "x"})
    assert missing.status_code == 403
    crossed = member.http.post("/console/keys", data={"csrf_token": other.csrf, "name": "x"})
    assert crossed.status_code == 403
    assert db_rows(server, "SELECT count(*) AS n FROM api_keys") == before
    header = member.http.post(
        "/console/keys", data={"name": "by-header"}, headers={"X-CSRF-Token": member.csrf}
    )
    assert header.status_code == 200, header.text


def test_create_shows_the_secret_once(server: ThreadServer) -> None:
    member = sign_in(server, make_key(server, name="member"))
    r = member.post("/keys", {"name": "ci", "rpm": "60", "expires_in_days": "30"})
    assert r.status_code == 200, r.text
    secret = re.search(
        r'<code class="secret" id="new-secret">(mg-[0-9a-f]{12}_[^<]+)</code>', r.text
    )
    assert secret is not None
    plaintext = secret.group(1)
    key_id = plaintext[3:15]
    assert r.headers["cache-control"] == "no-store"
    row = db_rows(
        server, "SELECT workspace_id, name, role, rpm_limit FROM api_keys WHERE id = :k", k=key_id
    )
    assert row == [
        {"workspace_id": member.key.workspace_id, "name": "ci", "role": "tenant", "rpm_limit": 60}
    ]
    again = member.get("/keys")
    assert plaintext not in again.text
    assert plaintext.split("_")[0] in again.text  # only its prefix
    # and the key works on the model API
    ok = httpx.get(f"{server.base_url}/v1/models", headers={"Authorization": f"Bearer {plaintext}"})
    assert ok.status_code == 200


def test_a_member_cannot_create_an_admin_key(server: ThreadServer) -> None:
    member = sign_in(server, make_key(server, name="member"))
    r = member.post("/keys", {"name": "sneaky", "role": "admin"})
    assert r.status_code == 400
    assert "Only an operator may create admin keys." in r.text
    assert db_rows(server, "SELECT count(*) AS n FROM api_keys WHERE role = 'admin'") == [{"n": 0}]


def test_revoked_key_ends_its_own_session(server: ThreadServer) -> None:
    operator = sign_in(server, make_key(server, role="admin", workspace="admin"))
    victim = sign_in(server, make_key(server, name="victim"))
    assert victim.get("/keys").status_code == 200
    r = operator.post(f"/keys/{victim.key.key_id}/revoke")
    assert r.status_code == 303
    after = victim.get("/keys")
    assert after.status_code == 303
    assert after.headers["location"] == "/console/login?next=/console/keys&reason=key_revoked"
    page = victim.get("/login?next=/console/keys&reason=key_revoked")
    assert "The key you signed in with has been revoked" in page.text
    crafted = victim.get("/login", params={"reason": "Call +1 555 0100 for help"})
    assert "555" not in crafted.text  # only known reasons put words on the page
    assert db_rows(
        server,
        "SELECT count(*) AS n FROM console_sessions WHERE api_key_id = :k",
        k=victim.key.key_id,
    ) == [{"n": 0}]
    assert operator.get("/keys").status_code == 200  # the operator's session lives on


def test_expired_session_is_refused(server: ThreadServer) -> None:
    member = sign_in(server, make_key(server))
    db_execute(server, "UPDATE console_sessions SET expires_at = '2000-01-01 00:00:00'")
    r = member.get("/keys")
    assert (r.status_code, r.headers["location"]) == (
        303,
        "/console/login?next=/console/keys&reason=session_ended",
    )
    assert db_rows(server, "SELECT count(*) AS n FROM console_sessions") == [{"n": 0}]


def test_sign_out_ends_the_session(server: ThreadServer) -> None:
    member = sign_in(server, make_key(server))
    r = member.post("/logout")
    assert (r.status_code, r.headers["location"]) == (303, "/console/login")
    assert member.get("/keys").status_code == 303
    actions = db_rows(
        server, "SELECT action FROM audit_log WHERE action LIKE 'console.%' ORDER BY id"
    )
    assert [a["action"] for a in actions] == ["console.sign_in", "console.sign_out"]


def test_unknown_page_and_static_files(server: ThreadServer) -> None:
    member = sign_in(server, make_key(server))
    r = member.get("/nowhere")
    assert r.status_code == 404
    assert 'data-status="404"' in r.text and "There is no such page." in r.text
    css = member.get("/static/console.css")
    assert css.status_code == 200
    assert css.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert css.headers["content-type"].startswith("text/css")
    js = member.get("/static/htmx-2.0.11.min.js")
    assert js.status_code == 200 and js.content.startswith(b"var htmx=function()")


def test_https_sets_secure_cookies(server: ThreadServer) -> None:
    key = make_key(server)
    # uvicorn trusts X-Forwarded-Proto from loopback (its forwarded_allow_ips): a TLS proxy
    https = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        form = http.get("/console/login", headers=https)
        pre = next(c for c in form.headers.get_list("set-cookie") if c.startswith(PRE_COOKIE))
        assert "; Secure" in pre and "SameSite=strict" in pre
        token = csrf_of(form.text)
        r = http.post(
            "/console/login",
            data={"csrf_token": token, "key": key.plaintext},
            headers={**https, "Cookie": f"{PRE_COOKIE}={token}"},
        )
        assert r.status_code == 303
        cookie = next(
            c for c in r.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")
        )
        assert "; Secure" in cookie and "HttpOnly" in cookie


@BOTH_DATABASES
def test_keys_page_shows_last_use(server: ThreadServer) -> None:
    key = make_key(server, name="used")
    member = sign_in(server, key)
    never = member.get(f"/keys/{key.key_id}").text
    assert "<dt>Last used</dt><dd>—</dd>" in never
    r = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key.plaintext}"},
        json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 5
    while not db_rows(server, "SELECT 1 FROM usage_rollups WHERE api_key_id = :k", k=key.key_id):
        assert time.monotonic() < deadline, "usage not flushed"
        time.sleep(0.02)
    minute = db_rows(
        server,
        "SELECT max(bucket_start) AS at FROM usage_rollups"
        " WHERE api_key_id = :k AND granularity = 'minute'",
        k=key.key_id,
    )[0]["at"]
    shown = datetime.fromisoformat(str(minute)).strftime("%Y-%m-%d %H:%M UTC")
    assert f"<dt>Last used</dt><dd>{shown}</dd>" in member.get(f"/keys/{key.key_id}").text
    assert f"<td>{shown}</td>" in member.get("/keys").text


def test_signing_in_again_replaces_the_session_and_pages_refuse_framing(
    server: ThreadServer,
) -> None:
    first = sign_in(server, make_key(server, name="one"))
    old_id = first.http.cookies[SESSION_COOKIE]
    with httpx.Client(base_url=server.base_url, timeout=10) as other_tab:  # an old form
        token = csrf_of(other_tab.get("/console/login").text)
    first.http.cookies.set(PRE_COOKIE, token)
    two = make_key(server, name="two")
    again = first.http.post("/console/login", data={"csrf_token": token, "key": two.plaintext})
    assert again.status_code == 303
    assert first.http.cookies[SESSION_COOKIE] != old_id
    rows = db_rows(server, "SELECT id_hash FROM console_sessions")
    assert rows == [{"id_hash": session_hash(first.http.cookies[SESSION_COOKIE])}]
    page = first.get("/keys")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert page.headers["cache-control"] == "no-store"
