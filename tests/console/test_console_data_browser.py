"""The console's data pages in a real browser (Debian's Chromium through Playwright): the
usage chart changing after a request (htmx, no reload), a playground answer streamed into
the page, a request id from the second page found by search, the CSV export downloaded, a
tenant seeing only its workspace; a screenshot of each page (``test-artifacts/console/``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from modelgrid.engines.fake import FakeEngine
from tests.console.conftest import BrowserThread
from tests.console.data_helpers import chat, request_ids, seed, wait_rows
from tests.console.helpers import make_key
from tests.console.test_console_browser import sign_in
from tests.support import ThreadServer, db_execute, db_rows, write_topology

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(server_factory, tmp_path: Path) -> ThreadServer:  # type: ignore[no-untyped-def]
    write_topology(
        tmp_path / "topology.toml", {"local": "", "eu-west": "IE"}, ["m"], gateway="local"
    )
    # a token every 0.1 s: the answer visibly arrives piece by piece
    return server_factory(FakeEngine(token_delay_s=0.1), key=False)  # type: ignore[no-any-return]


def totals(page: Any) -> dict[str, str]:
    rows = page.eval_on_selector_all(
        "#totals tbody tr",
        "rs => rs.map(r => [r.dataset.group, r.querySelector('td.requests').textContent])",
    )
    return dict(rows)


def test_usage_chart_changes_after_a_request(
    browser: BrowserThread, server: ThreadServer, shots: Any
) -> None:
    acme = make_key(server, name="acme", workspace="acme")
    seed(server, acme, 3, prefix="a")
    wait_rows(server, 3)

    def before(b: Any) -> Any:
        page = sign_in(b, server, acme)
        page.goto(f"{server.base_url}/console/overview?range=1h")
        assert totals(page) == {"all": "3"}
        page.evaluate("window.notReloaded = true")
        return page

    page = browser.run(before)
    chat(server, acme)
    wait_rows(server, 4)

    def after(_: Any) -> None:
        old = page.get_attribute("#charts", "data-updated")
        page.click("#overview-filters button[type=submit]")  # htmx swaps #charts in place
        page.wait_for_function(
            "old => document.querySelector('#charts').dataset.updated !== old", arg=old
        )
        assert totals(page) == {"all": "4"}
        assert page.evaluate("window.notReloaded") is True
        assert page.locator("#chart-requests [data-series=all]").count() >= 1
        page.select_option("#o-by", "model")  # a change refreshes too
        page.wait_for_selector("#totals tr[data-group='fake-model']")
        assert totals(page) == {"fake-model": "4"}
        assert page.evaluate("window.notReloaded") is True
        shots(page, "overview")

    browser.run(after)


def test_playground_streams_an_answer_and_meters_it(
    browser: BrowserThread, server: ThreadServer, shots: Any
) -> None:
    acme = make_key(server, name="acme", workspace="acme")

    def steps(b: Any) -> str:
        page = sign_in(b, server, acme)
        page.goto(f"{server.base_url}/console/playground")
        assert acme.plaintext not in page.content()
        page.fill("#p-system", "Be brief.")
        page.fill("#p-max-tokens", "20")  # the fake model's window is 64 tokens
        page.fill("#p-temperature", "0.2")
        page.dispatch_event("#p-temperature", "change")
        page.wait_for_function(
            "document.querySelector('#sdk-code').textContent.includes('temperature=0.2')"
        )
        code = page.inner_text("#sdk-code")
        assert '"Be brief."' in code and "max_tokens=20," in code
        page.fill("#p-prompt", "What is the capital of France?")
        page.click("#p-send")
        answer = ".turn.assistant .content"
        # streamed: part of the answer shows before the whole of it
        page.wait_for_function(
            f"(() => {{ const t = document.querySelector('{answer}'); "
            "return t && t.textContent.length > 0 && t.textContent.length < 31; })()"
        )
        page.wait_for_function(
            f"document.querySelector('{answer}').textContent === 'Paris is the capital of France.'"
        )
        page.wait_for_function("document.querySelector('#chat-status').dataset.requestId")
        shots(page, "playground")
        return str(page.get_attribute("#chat-status", "data-request-id"))

    request_id = browser.run(steps)
    rows = wait_rows(server, 1)
    assert rows[0]["request_id"] == request_id
    assert (rows[0]["api_key_id"], rows[0]["completion_tokens"]) == (acme.key_id, 6)

    db_execute(server, "DELETE FROM console_sessions")  # the session ends (signed out elsewhere)

    def ended(_: Any) -> None:
        page = browser.browser.contexts[-1].pages[-1]
        page.fill("#p-prompt", "And of Spain?")
        page.click("#p-send")
        page.wait_for_selector("text=Your session has ended: sign in again.")

    browser.run(ended)
    assert len(db_rows(server, "SELECT request_id FROM usage_records")) == 1


def test_search_a_request_from_the_second_page_and_export_csv(
    browser: BrowserThread, server: ThreadServer, shots: Any
) -> None:
    acme = make_key(server, name="acme", workspace="acme")
    globex = make_key(server, name="globex", workspace="globex")
    admin = make_key(server, role="admin", workspace="admin")
    mine = seed(server, acme, 70, prefix="a")
    theirs = seed(server, globex, 5, prefix="g", region="eu-west")
    wait_rows(server, 75)

    def steps(b: Any) -> tuple[str, bytes]:
        page = sign_in(b, server, acme)
        page.goto(f"{server.base_url}/console/requests")
        first = request_ids(page.content())
        assert len(first) == 50 and not set(first) & set(theirs)
        with page.expect_navigation():
            page.click("#older")
        second = request_ids(page.content())
        assert len(second) == 20 and set(second) <= set(mine)
        wanted = second[7]
        page.goto(f"{server.base_url}/console/requests")
        page.fill("#r-id", wanted)
        with page.expect_navigation():
            page.click("#request-search button[type=submit]")
        assert request_ids(page.content()) == [wanted]
        shots(page, "request-search")
        page.fill("#r-id", theirs[0])  # another workspace's: not found
        with page.expect_navigation():
            page.click("#request-search button[type=submit]")
        assert request_ids(page.content()) == []
        assert page.locator("#not-found").count() == 1

        page.goto(f"{server.base_url}/console/usage")
        shots(page, "usage")
        with page.expect_download() as info:
            page.click("#export-csv")
        path = info.value.path()
        assert info.value.suggested_filename.startswith("usage-")
        page.click("#invoice-link")
        page.wait_for_selector("#invoice")
        shots(page, "invoice")
        return wanted, Path(path).read_bytes()

    wanted, data = browser.run(steps)
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert {r["workspace_id"] for r in rows} == {acme.workspace_id}
    ledger = db_rows(
        server,
        "SELECT count(*) AS n, sum(prompt_tokens) AS p, sum(cost_micros) AS c "
        "FROM usage_records WHERE workspace_id = :ws",
        ws=acme.workspace_id,
    )[0]
    got = [sum(int(r[c]) for r in rows) for c in ("requests", "prompt_tokens", "cost_micros")]
    assert (
        got
        == [ledger["n"], ledger["p"], ledger["c"]]
        == [70, sum(range(10, 80)), 70 * 1000 + sum(range(70))]
    )

    def operator(b: Any) -> None:
        page = sign_in(b, server, admin)
        page.goto(f"{server.base_url}/console/requests?region=eu-west")
        assert request_ids(page.content()) == list(reversed(theirs))
        for name in ("regions", "batches", "knowledge", "overview", "usage", "playground"):
            r = page.goto(f"{server.base_url}/console/{name}")
            assert r is not None and r.status == 200
            shots(page, f"operator-{name}")

    browser.run(operator)
    assert wanted in mine


def test_a_tenant_sees_only_its_workspace(
    browser: BrowserThread, server: ThreadServer, shots: Any
) -> None:
    acme = make_key(server, name="acme", workspace="acme")
    globex = make_key(server, name="globex", workspace="globex")
    seed(server, acme, 4, prefix="a")
    theirs = seed(server, globex, 6, prefix="g", model="other-model")
    wait_rows(server, 10)

    def steps(b: Any) -> None:
        page = sign_in(b, server, acme)
        page.goto(f"{server.base_url}/console/usage")
        cells = page.eval_on_selector_all(
            "#usage tbody tr td:nth-child(3)", "t => t.map(x => x.textContent)"
        )
        assert cells == ["fake-model"]  # no workspace column, no other-model
        assert page.inner_text("#usage tfoot tr td:nth-child(2)") == "4"
        page.goto(f"{server.base_url}/console/overview?range=1h&workspace={globex.workspace_id}")
        assert totals(page) == {"all": "4"}
        page.goto(f"{server.base_url}/console/requests?model=other-model")
        assert request_ids(page.content()) == []
        r = page.goto(f"{server.base_url}/console/requests?id={theirs[0]}")
        assert r is not None and r.status == 404
        page.goto(f"{server.base_url}/console/regions")
        workspaces = page.eval_on_selector_all(
            "#residency tbody tr", "t => t.map(x => x.dataset.workspace)"
        )
        assert workspaces == [acme.workspace_id]
        shots(page, "tenant-regions")
        page.goto(f"{server.base_url}/console/requests")
        shots(page, "tenant-requests")

    browser.run(steps)


def test_tables_fit_a_desktop_and_charts_read_on_a_phone(
    browser: BrowserThread, server: ThreadServer, shots: Any
) -> None:
    admin = make_key(server, role="admin", workspace="admin")
    acme = make_key(server, name="a-long-key-name-for-the-layout", workspace="acme")
    seed(server, acme, 3, prefix="a")
    seed(server, admin, 2, prefix="b", region="eu-west")
    wait_rows(server, 5)
    cut = (
        "Array.from(document.querySelectorAll('.scroll'))"
        ".filter(e => e.scrollWidth > e.clientWidth).length"
    )

    def steps(b: Any) -> tuple[dict[str, int], float]:
        overflowing = {}
        for scheme in ("light", "dark"):
            page = sign_in(b, server, admin, viewport={"width": 1280, "height": 800},
                           color_scheme=scheme)  # fmt: skip
            for name in ("keys", "requests", "usage", "regions", "workspaces"):
                page.goto(f"{server.base_url}/console/{name}")
                overflowing[f"{name}-{scheme}"] = page.evaluate(cut)
                shots(page, f"1280-{scheme}-{name}")
        phone = sign_in(b, server, admin, viewport={"width": 390, "height": 844})
        phone.goto(f"{server.base_url}/console/overview")
        shots(phone, "390-overview")
        label = phone.eval_on_selector(
            "svg.chart text.ylabel", "t => t.getBoundingClientRect().height"
        )
        return overflowing, label

    overflowing, label = browser.run(steps)
    assert overflowing == {
        f"{n}-{s}": 0
        for s in ("light", "dark")
        for n in ("keys", "requests", "usage", "regions", "workspaces")
    }
    assert label >= 9  # px: the 640-unit chart ~350 px wide, labels of 18 units
