"""The console's data pages over HTTP (overview, usage with CSV and invoice, request log,
regions, playground, batches, knowledge bases): who sees what, the numbers against the
ledger, refusals, and the SQL each page sends."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.fake_embedding import FakeEmbeddingEngine
from tests.console.data_helpers import (
    chat,
    csv_rows,
    request_ids,
    seed,
    sums,
    totals_requests,
    wait_rows,
)
from tests.console.helpers import make_key, request_statements, sign_in
from tests.databases import BOTH_DATABASES
from tests.support import NewKey, ThreadServer, db_rows, write_topology


@pytest.fixture
def server(server_factory, tmp_path: Path) -> ThreadServer:  # type: ignore[no-untyped-def]
    write_topology(
        tmp_path / "topology.toml", {"local": "", "eu-west": "IE"}, ["m"], gateway="local"
    )
    return server_factory(key=False)  # type: ignore[no-any-return]


def narrow_key(server: ThreadServer, member: Any) -> NewKey:
    """A key of the member's workspace narrowed to one model: a key holder."""
    created = member.post("/keys", {"name": "narrow", "allowed_models": "fake-model"})
    secret = re.search(r'id="new-secret">([^<]+)<', created.text).group(1)  # type: ignore[union-attr]
    return NewKey(secret[3:15], f"mg-{secret[3:15]}", member.key.workspace_id, secret)


def test_overview_counts_each_scope_and_refreshes_as_a_partial(server: ThreadServer) -> None:
    acme = make_key(server, name="acme", workspace="acme")
    globex = make_key(server, name="globex", workspace="globex")
    admin = make_key(server, role="admin", workspace="admin")
    operator, member = sign_in(server, admin), sign_in(server, acme)
    holder_key = narrow_key(server, member)
    for k in (acme, acme, globex, holder_key):
        chat(server, k)
    wait_rows(server, 4)

    assert totals_requests(operator.get("/overview").text) == {"all": 4}
    assert totals_requests(operator.get(f"/overview?workspace={globex.workspace_id}").text) == {
        "all": 1
    }
    assert totals_requests(member.get("/overview").text) == {"all": 3}
    # a member cannot widen its scope by URL
    assert totals_requests(member.get(f"/overview?workspace={globex.workspace_id}").text) == {
        "all": 3
    }
    holder = sign_in(server, holder_key)
    assert totals_requests(holder.get("/overview").text) == {"all": 1}
    by_region = totals_requests(operator.get("/overview?range=1h&by=region").text)
    assert by_region == {"local": 4}

    page = operator.get("/overview?range=1h&by=model")
    assert page.status_code == 200
    for metric in ("requests", "tokens", "spend", "errors", "p50", "p95"):
        assert f'id="chart-{metric}"' in page.text
    assert 'data-series="fake-model"' in page.text
    partial = operator.get("/overview?range=1h", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert partial.text.startswith('<div id="charts"') and "<html" not in partial.text

    bad = operator.get("/overview?range=5y")
    assert bad.status_code == 400 and "range must be one of 1h, 24h, 3d, 7d, 30d" in bad.text
    assert operator.get("/overview?by=key").status_code == 400


@BOTH_DATABASES
def test_usage_table_and_csv_equal_the_ledger_in_every_scope(server: ThreadServer) -> None:
    acme = make_key(server, name="acme", workspace="acme")
    globex = make_key(server, name="globex", workspace="globex")
    admin = make_key(server, role="admin", workspace="admin")
    seed(server, acme, 30, prefix="a")
    seed(server, globex, 12, prefix="g", model="other-model", region="eu-west")
    chat(server, acme)
    wait_rows(server, 43)
    operator, member = sign_in(server, admin), sign_in(server, acme)
    cols = ("requests", "prompt_tokens", "completion_tokens", "cost_micros")

    def ledger(where: str = "1=1") -> tuple[int, ...]:
        row = db_rows(
            server,
            "SELECT count(*) AS requests, sum(prompt_tokens) AS prompt_tokens, "
            "sum(completion_tokens) AS completion_tokens, sum(cost_micros) AS cost_micros "
            f"FROM usage_records WHERE {where}",
        )[0]
        return tuple(int(row[c] or 0) for c in cols)

    everything = operator.get("/usage/export.csv")
    assert everything.status_code == 200
    assert everything.headers["content-type"] == "text/csv; charset=utf-8"
    assert everything.headers["content-disposition"].startswith('attachment; filename="usage-')
    assert everything.text.startswith("day,workspace_id,api_key_id,model,region,currency,")
    assert "\r\n" in everything.text
    assert sums(csv_rows(everything.text), *cols) == ledger()
    acme_csv = csv_rows(member.get("/usage/export.csv").text)
    assert {r["workspace_id"] for r in acme_csv} == {acme.workspace_id}
    assert sums(acme_csv, *cols) == ledger(f"workspace_id = '{acme.workspace_id}'")
    # the member's URL naming another workspace still gets its own
    assert (
        member.get(f"/usage/export.csv?workspace={globex.workspace_id}").text
        == member.get("/usage/export.csv").text
    )
    by_key = csv_rows(operator.get(f"/usage/export.csv?key={acme.prefix}").text)
    assert {r["api_key_id"] for r in by_key} == {acme.key_id}
    assert sums(by_key, *cols) == ledger(f"api_key_id = '{acme.key_id}'")
    eu = csv_rows(operator.get("/usage/export.csv?region=eu-west&model=other-model").text)
    assert sums(eu, *cols) == ledger("region = 'eu-west'")
    cost = sum(int(r["cost_micros"]) for r in eu)
    assert [r["cost"] for r in eu] == [f"0.{int(r['cost_micros']):06d}" for r in eu]
    assert cost == ledger("region = 'eu-west'")[3]

    table = operator.get(f"/usage?workspace={globex.workspace_id}")
    assert table.status_code == 200
    assert '<tr class="total" data-currency="USD">' in table.text
    globex_prompt = ledger(f"workspace_id = '{globex.workspace_id}'")[1]
    assert f"{globex_prompt:,}" in table.text
    assert operator.get("/usage?first_day=2026-02-30").status_code == 400
    late = operator.get("/usage?first_day=2026-05-02&last_day=2026-05-01")
    assert late.status_code == 400 and "last_day is before first_day" in late.text
    assert (
        operator.get("/usage/export.csv?first_day=2020-01-01&last_day=2026-01-01").status_code
        == 400
    )


def test_invoice_shown_and_downloaded_for_the_workspace_only(server: ThreadServer) -> None:
    acme = make_key(server, name="acme", workspace="acme")
    globex = make_key(server, name="globex", workspace="globex")
    admin = make_key(server, role="admin", workspace="admin")
    seed(server, acme, 5, prefix="a")
    seed(server, globex, 3, prefix="g")
    wait_rows(server, 8)
    month = f"{datetime.now(UTC):%Y-%m}"
    operator, member = sign_in(server, admin), sign_in(server, acme)
    expected = 1000 + 1001 + 1002 + 1003 + 1004  # seed's cost_micros

    page = member.get(f"/usage/invoice?month={month}")
    assert page.status_code == 200
    assert re.search(r'id="invoice-total">0\.005010 USD<', page.text), page.text
    downloaded = member.get(f"/usage/invoice.csv?month={month}")
    assert downloaded.status_code == 200
    lines = downloaded.text.strip().split("\r\n")
    assert lines[-1] == f"total,{acme.workspace_id},{month},,,USD,5,60,0,35,{expected},0.005010"
    # another workspace by URL: the member's own, never globex's
    other = member.get(f"/usage/invoice.csv?month={month}&workspace={globex.workspace_id}")
    assert other.text == downloaded.text
    theirs = operator.get(f"/usage/invoice.csv?month={month}&workspace={globex.workspace_id}")
    assert theirs.text.strip().split("\r\n")[-1].startswith(f"total,{globex.workspace_id},")
    assert operator.get("/usage/invoice?month=2026-13").status_code == 400
    assert operator.get("/usage/invoice?month=2026-01&workspace=nope").status_code == 404
    holder = sign_in(server, narrow_key(server, member))
    assert holder.get(f"/usage/invoice?month={month}").status_code == 404
    assert holder.get(f"/usage/invoice.csv?month={month}").status_code == 404


@BOTH_DATABASES
def test_request_log_search_pages_and_scope(server: ThreadServer) -> None:
    acme = make_key(server, name="acme", workspace="acme")
    globex = make_key(server, name="globex", workspace="globex")
    admin = make_key(server, role="admin", workspace="admin")
    ids = seed(server, acme, 120, prefix="a")
    seed(server, acme, 3, prefix="e", status=500)
    theirs = seed(server, globex, 2, prefix="g")
    wait_rows(server, 125)
    operator, member = sign_in(server, admin), sign_in(server, acme)

    first = member.get("/requests")
    shown = request_ids(first.text)
    assert len(shown) == 50 and theirs[0] not in shown
    older = re.search(r'id="older" href="/console/requests\?before=([^"&]+)"', first.text)
    assert older is not None and older.group(1) == shown[-1]
    second = request_ids(member.get(f"/requests?before={shown[-1]}").text)
    assert len(second) == 50 and not set(second) & set(shown)
    # newest first, by time: the three errors were seeded last (same seconds as a00000..2)
    everything = shown + second + request_ids(member.get(f"/requests?before={second[-1]}").text)
    assert len(everything) == 123 and len(set(everything)) == 123

    # a search finds a row whatever page it is on (the oldest here)
    found = member.get(f"/requests?id={ids[0]}")
    assert found.status_code == 200 and request_ids(found.text) == [ids[0]]
    row = found.text.split(f'data-request-id="{ids[0]}"')[1].split("</tr>")[0]
    assert ">200<" in row and "90 ms" in row and "40 ms" in row and "0.001000 USD" in row
    assert ">local-r0<" in row  # the replica
    # another workspace's request is not found (not told apart from a missing one)
    hidden = member.get(f"/requests?id={theirs[0]}")
    assert hidden.status_code == 404 and request_ids(hidden.text) == []
    assert request_ids(operator.get(f"/requests?id={theirs[0]}").text) == [theirs[0]]
    assert member.get(f"/requests?before={theirs[0]}").status_code == 404

    errors = request_ids(member.get("/requests?status=5xx").text)
    assert sorted(errors) == sorted(f"e{i:05d}{acme.key_id}" for i in range(3))
    assert member.get("/requests?status=3xx").status_code == 400
    assert request_ids(operator.get("/requests?model=nope").text) == []


def test_regions_show_replicas_and_residency(server: ThreadServer) -> None:
    acme = make_key(server, name="acme", workspace="acme")
    admin = make_key(server, role="admin", workspace="admin")
    operator, member = sign_in(server, admin), sign_in(server, acme)
    op = operator.get("/regions")
    assert op.status_code == 200
    assert re.findall(r'<tr data-region="([^"]+)">', op.text) == ["local", "eu-west"]
    assert 'data-replica="local/m/0"' in op.text or 'data-replica="local/m/1"' in op.text
    assert 'class="region-map"' in op.text and 'data-region="eu-west"' in op.text
    assert "http://" in op.text  # operators see upstream URLs
    workspaces = re.findall(r'<tr data-workspace="([^"]+)">', op.text)
    assert acme.workspace_id in workspaces and admin.workspace_id in workspaces
    mine = member.get("/regions")
    assert re.findall(r'<tr data-workspace="([^"]+)">', mine.text) == [acme.workspace_id]
    assert 'may-run">local, eu-west<' in mine.text
    assert "http://" not in mine.text.split('id="replicas"')[1].split("</table>")[0]
    holder = sign_in(server, narrow_key(server, member))
    assert holder.get("/regions").status_code == 404


def test_playground_streams_as_the_signed_in_key_and_meters_once(server: ThreadServer) -> None:
    acme = make_key(server, name="acme", workspace="acme")
    admin = make_key(server, role="admin", workspace="admin")
    member = sign_in(server, acme)
    page = member.get("/playground")
    assert page.status_code == 200
    assert '<option value="fake-model">' in page.text
    assert acme.plaintext not in page.text and "sk-" not in page.text
    assert "model=&#34;fake-model&#34;," in page.text  # the SDK code
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "Capital?"}]}

    forged = member.http.post(
        "/console/playground/chat", json=body, headers={"X-CSRF-Token": "0" * 64}
    )
    assert (forged.status_code, forged.json()["error"]["code"]) == (403, "csrf_failed")
    assert forged.json()["error"]["message"].startswith("This form's security token is missing")
    signed_out = httpx.post(f"{server.base_url}/console/playground/chat", json=body)
    assert (signed_out.status_code, signed_out.json()) == (
        401,
        {
            "error": {
                "message": "Sign in to the console.",
                "type": "authentication_error",
                "param": None,
                "code": "sign_in_required",
            }
        },
    )
    r = member.http.post(
        "/console/playground/chat", json=body, headers={"X-CSRF-Token": member.csrf}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Paris is the capital of France."
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    rows = wait_rows(server, 1)
    assert (rows[0]["api_key_id"], rows[0]["workspace_id"]) == (acme.key_id, acme.workspace_id)
    assert rows[0]["request_id"] == r.headers["x-request-id"]
    assert rows[0]["completion_tokens"] == 6

    unknown = member.http.post(
        "/console/playground/chat",
        json={**body, "model": "nope"},
        headers={"X-CSRF-Token": member.csrf},
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    bad = member.http.post(
        "/console/playground/chat",
        json={**body, "temperature": "hot"},
        headers={"X-CSRF-Token": member.csrf},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "temperature"
    many = {**body, "messages": [{"role": "user", "content": "x"}] * 2049}
    too_many = member.http.post(
        "/console/playground/chat", json=many, headers={"X-CSRF-Token": member.csrf}
    )
    api = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json=many,
        headers={"Authorization": f"Bearer {acme.plaintext}"},
    )
    assert too_many.status_code == api.status_code == 400
    assert too_many.json()["error"] == api.json()["error"]  # worded as the API words it
    junk = member.http.post(
        "/console/playground/chat", content=b"{", headers={"X-CSRF-Token": member.csrf}
    )
    assert junk.status_code == 400 and junk.json()["error"]["message"] == "The body must be JSON."

    code = member.get("/playground/code?model=fake-model&system=Be+brief&temperature=0.2")
    assert "temperature=0.2," in code.text and "&#34;Be brief&#34;" in code.text
    assert "max_tokens" not in code.text

    operator = sign_in(server, admin)
    assert (
        f"billed to workspace <code>{admin.workspace_id}</code>" in operator.get("/playground").text
    )
    r = operator.http.post(
        "/console/playground/chat", json=body, headers={"X-CSRF-Token": operator.csrf}
    )
    assert r.status_code == 200 and "[DONE]" in r.text
    rows = wait_rows(server, 2)
    assert (rows[1]["api_key_id"], rows[1]["workspace_id"]) == (admin.key_id, admin.workspace_id)


def test_batches_and_knowledge_pages_list_the_workspace(server: ThreadServer) -> None:
    acme = make_key(server, name="acme", workspace="acme")
    admin = make_key(server, role="admin", workspace="admin")
    operator, member = sign_in(server, admin), sign_in(server, acme)
    for signed in (operator, member):
        b = signed.get("/batches")
        assert b.status_code == 200 and "No batches." in b.text
        k = signed.get("/knowledge")
        assert k.status_code == 200
    assert member.get("/batches?after=batch_nope").status_code == 404


@BOTH_DATABASES
def test_each_data_page_sends_a_handful_of_statements(server: ThreadServer) -> None:
    acme = make_key(server, name="acme", workspace="acme")
    admin = make_key(server, role="admin", workspace="admin")
    ids = seed(server, acme, 60, prefix="a")
    operator, member = sign_in(server, admin), sign_in(server, acme)
    measured = {}
    with request_statements(server) as statements:
        for who, signed in (("operator", operator), ("member", member)):
            for path in (
                "/overview",
                "/usage",
                "/usage/export.csv",
                "/requests",
                f"/requests?before={ids[30]}",
                f"/requests?id={ids[0]}",
                "/regions",
                "/playground",
                "/batches",
                "/knowledge",
            ):
                assert signed.get(path).status_code == 200, path
                counts = []
                for _ in range(3):  # the fewest of 3: a cache refresh may fall in one
                    statements.clear()
                    assert signed.get(path).status_code == 200
                    counts.append(len(statements))
                measured[who, path] = min(counts)
    # one for the session (with its key), then the page's own reads; an operator's pages
    # with a workspace filter also list the workspaces
    later, search = f"/requests?before={ids[30]}", f"/requests?id={ids[0]}"
    expected = {
        "/overview": (3, 2),
        "/usage": (3, 2),
        "/usage/export.csv": (2, 2),
        "/requests": (3, 2),
        later: (4, 3),  # the anchor row by primary key
        search: (3, 2),
        "/regions": (2, 2),  # the workspaces (operator) or the workspace (member)
        "/playground": (1, 1),
        "/batches": (3, 2),
        "/knowledge": (4, 3),  # the bases, the vector stores (+ the workspaces)
    }
    assert measured == {
        **{("operator", p): n[0] for p, n in expected.items()},
        **{("member", p): n[1] for p, n in expected.items()},
    }


def test_batches_and_vector_stores_listed_with_counts_for_their_workspace(
    server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory(FakeEngine(), FakeEmbeddingEngine(), key=False)
    acme = make_key(server, name="acme", workspace="acme")
    globex = make_key(server, name="globex", workspace="globex")
    admin = make_key(server, role="admin", workspace="admin")
    c = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=acme.plaintext, max_retries=0)
    line = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]}
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"t-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": line,
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    with path.open("rb") as f:
        uploaded = c.files.create(file=f, purpose="batch")
    batch = c.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 30
    while batch.status != "completed":
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
        batch = c.batches.retrieve(batch.id)
    operator, member, other = (sign_in(server, k) for k in (admin, acme, globex))

    mine = member.get("/batches").text
    row = mine.split(f'<tr data-batch="{batch.id}">')[1].split("</tr>")[0]
    assert '<td class="status">completed</td>' in row
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["3", "3", "0"]
    assert f'data-batch="{batch.id}"' in operator.get("/batches").text
    assert f'data-batch="{batch.id}"' not in other.get("/batches").text
    assert (
        f'data-batch="{batch.id}"'
        not in operator.get(f"/batches?workspace={globex.workspace_id}").text
    )

    store = c.vector_stores.create(name="handbook")
    listed = member.get("/knowledge")
    assert listed.status_code == 200
    row = listed.text.split(f'<tr data-vs="{store.id}">')[1].split("</tr>")[0]
    assert "<td>handbook</td>" in row and '<td class="status">completed</td>' in row
    assert f'data-vs="{store.id}"' not in other.get("/knowledge").text
    assert f'data-kb="{store.id}"' not in listed.text  # a vector store, not listed twice
    assert f'data-vs="{store.id}"' in operator.get(f"/knowledge?workspace={acme.workspace_id}").text


@BOTH_DATABASES
def test_request_log_pages_through_rows_of_one_instant(server: ThreadServer) -> None:
    """Rows sharing one ``created_at`` (a batch flushed at once) are paged by request id:
    each shown once, none skipped."""
    acme = make_key(server, name="acme", workspace="acme")
    ids = seed(server, acme, 130, prefix="t", spacing_s=0)
    member = sign_in(server, acme)
    seen: list[str] = []
    page = request_ids(member.get("/requests").text)
    while page:
        seen += page
        if len(page) < 50:
            break
        page = request_ids(member.get(f"/requests?before={page[-1]}").text)
    assert seen == sorted(ids, reverse=True)
