"""The console in a real browser (Debian's Chromium through Playwright): sign in as operator
and as tenant, create and revoke a key, refused URLs, a forged CSRF token, a wrong key;
a screenshot of each page (``test-artifacts/console/``).

Each test makes its keys first, then runs its browser steps in the browser's own thread
(``BrowserThread.run``)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelgrid.console.access import Access
from tests.console.conftest import BrowserThread
from tests.console.helpers import landing, make_key
from tests.support import NewKey, ThreadServer, db_rows

pytestmark = pytest.mark.timeout(120)


def sign_in(
    browser: Any,
    server: ThreadServer,
    key: NewKey | str,
    access: Access | None = None,
    **context: Any,
) -> Any:
    """A new browser context signed in with ``key`` through the sign-in form (landing where
    ``access`` lands, when given), then on the keys page; its page."""
    page = browser.new_context(**context).new_page()
    page.goto(f"{server.base_url}/console/login")
    page.fill("#key", key if isinstance(key, str) else key.plaintext)
    with page.expect_navigation():
        page.click("button[type=submit]")
    if access is not None:
        assert page.url == server.base_url + landing(access)
    if not page.url.endswith("/console/keys"):
        page.goto(f"{server.base_url}/console/keys")
    return page


def prefixes(page: Any) -> set[str]:
    found = page.eval_on_selector_all(
        "#keys tbody tr[data-prefix]", "rs => rs.map(r => r.dataset.prefix)"
    )
    return set(found)


def test_operator_and_tenant_each_see_their_own(
    browser: BrowserThread, fake_server: ThreadServer, shots: Any
) -> None:
    server = fake_server
    acme = make_key(server, name="acme", workspace="acme")
    globex = make_key(server, name="globex", workspace="globex")
    admin = make_key(server, role="admin", workspace="admin")

    def steps(b: Any) -> None:
        op = sign_in(b, server, admin, "operator")
        assert {acme.prefix, globex.prefix, admin.prefix} <= prefixes(op)
        assert op.inner_text(".who .badge") == "operator"
        shots(op, "operator-keys")
        for path in ("workspaces", "prices", "audit"):
            r = op.goto(f"{server.base_url}/console/{path}")
            assert r is not None and r.status == 200
            if path == "workspaces":  # acme, admin, default, globex
                assert op.locator("#workspaces tbody tr").count() == 4
            shots(op, f"operator-{path}")
        for path, name in (
            (f"keys/{acme.key_id}", "operator-key"),
            (f"workspaces/{acme.workspace_id}", "operator-workspace"),
        ):
            r = op.goto(f"{server.base_url}/console/{path}")
            assert r is not None and r.status == 200
            shots(op, name)
        op.goto(f"{server.base_url}/console/audit")
        actions = op.eval_on_selector_all(
            "#audit tbody tr td:nth-child(3)", "tds => tds.map(t => t.textContent)"
        )
        assert actions[0] == "console.sign_in"

        tenant = sign_in(b, server, acme, "member")
        assert prefixes(tenant) == {acme.prefix}
        assert tenant.inner_text(".who .badge") == "member"
        nav = tenant.eval_on_selector_all("nav.side a", "as => as.map(a => a.textContent)")
        assert "Audit log" in nav and "Keys" in nav
        shots(tenant, "tenant-keys")
        r = tenant.goto(f"{server.base_url}/console/workspaces")
        assert r is not None and r.status == 200
        assert tenant.locator("#workspaces tbody tr").count() == 1
        assert tenant.locator("text=Create a workspace").count() == 0
        shots(tenant, "tenant-workspaces")
        r = tenant.goto(f"{server.base_url}/console/audit")
        assert r is not None and r.status == 200
        shots(tenant, "tenant-audit")

        phone = sign_in(
            b,
            server,
            acme,
            "member",
            viewport={"width": 375, "height": 740},
            color_scheme="dark",
            is_mobile=True,
        )
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375  # tables scroll
        assert phone.evaluate("getComputedStyle(document.body).backgroundColor") == (
            "rgb(17, 19, 22)"  # dark mode
        )
        shots(phone, "phone-dark-keys")

    browser.run(steps)


def test_create_and_revoke_a_key(
    browser: BrowserThread, fake_server: ThreadServer, shots: Any
) -> None:
    server = fake_server
    owner = make_key(server, name="owner", workspace="acme")

    def steps(b: Any) -> None:
        member = sign_in(b, server, owner, "member")
        member.on("dialog", lambda d: d.accept())
        member.click("#create summary")
        member.fill("#k-name", "deploy")
        member.fill("#k-rpm", "30")
        member.click("#create button[type=submit]")
        secret = member.locator("#new-secret").inner_text()
        assert re.fullmatch(r"mg-[0-9a-f]{12}_[A-Za-z0-9_\-]{43}", secret)
        key_id = secret[3:15]
        shots(member, "secret-shown-once")
        assert db_rows(server, "SELECT name, rpm_limit FROM api_keys WHERE id = :k", k=key_id) == [
            {"name": "deploy", "rpm_limit": 30}
        ]
        member.reload()
        assert secret not in member.content()
        assert f"mg-{key_id}" in prefixes(member)

        holder = sign_in(b, server, secret, "member")  # not narrowed: a member key
        member.click(f"#key-{key_id} button.danger")
        member.wait_for_selector(f"#key-{key_id} .badge.revoked")
        shots(member, "revoked")
        holder.reload()
        assert holder.url.startswith(f"{server.base_url}/console/login")
        assert "revoked" in holder.inner_text(".notice")
        shots(holder, "revoked-session-refused")

    browser.run(steps)


def test_refusals(browser: BrowserThread, fake_server: ThreadServer, shots: Any) -> None:
    server = fake_server
    acme = make_key(server, name="acme", workspace="acme")
    globex = make_key(server, name="globex", workspace="globex")

    def steps(b: Any) -> None:
        tenant = sign_in(b, server, acme, "member")
        for path in (f"keys/{globex.key_id}", f"workspaces/{globex.workspace_id}"):
            r = tenant.goto(f"{server.base_url}/console/{path}")
            assert r is not None and r.status == 404, path
            assert tenant.inner_text("h1") == "404 Not Found"
        shots(tenant, "other-workspace-404")

        tenant.goto(f"{server.base_url}/console/keys")
        tenant.click("#create summary")
        tenant.fill("#k-name", "forged")
        tenant.evaluate(  # what a forged page would send: the form field and htmx's header
            "document.querySelectorAll('input[name=csrf_token]').forEach(i => i.value = 'forged');"
            "document.body.setAttribute('hx-headers', JSON.stringify({'X-CSRF-Token': 'forged'}))"
        )
        with tenant.expect_response(f"{server.base_url}/console/keys") as answer:
            tenant.click("#create button[type=submit]")
        assert answer.value.status == 403
        assert answer.value.request.headers["x-csrf-token"] == "forged"
        tenant.wait_for_selector('[data-status="403"]')
        assert "security token is missing or wrong" in tenant.inner_text("#main")
        shots(tenant, "forged-csrf-403")
        assert db_rows(server, "SELECT count(*) AS n FROM api_keys WHERE name = 'forged'") == [
            {"n": 0}
        ]

        page = b.new_context().new_page()
        page.goto(f"{server.base_url}/console/login")
        shots(page, "login")
        for _ in range(5):
            page.fill("#key", acme.plaintext[:-3] + "zzz")
            with page.expect_navigation() as nav:
                page.click("button[type=submit]")
            assert nav.value is not None and nav.value.status == 401
            assert page.inner_text(".notice.error") == "That key was not accepted."
        page.fill("#key", acme.plaintext)
        with page.expect_navigation() as nav:
            page.click("button[type=submit]")
        assert nav.value is not None and nav.value.status == 429
        assert "Too many failed sign-ins" in page.inner_text(".notice.error")
        shots(page, "rate-limited")

    browser.run(steps)
