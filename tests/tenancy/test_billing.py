"""Billing: month bounds, exact money text, CSV bytes, and invoices over the ledger (SQLite and
PostgreSQL): totals equal ledger sums exactly, and a price change never alters a past cost."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelgrid.core.errors import InvalidRequestError, NotFoundError
from modelgrid.protocol.admin import Invoice, InvoiceLine, PriceCreate, WorkspaceCreate
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import Price
from modelgrid.tenancy import billing
from modelgrid.tenancy.pricing import PriceBook, PriceEntry
from tests.databases import BOTH_DATABASES, insert_usage, usage_row, with_sessions
from tests.support import control_plane


@pytest.mark.parametrize(
    ("month", "start", "end"),
    [
        ("2026-03", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2024-02", datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
    ],
)
def test_month_bounds_are_utc_calendar_months(month: str, start: datetime, end: datetime) -> None:
    assert billing.month_bounds(month) == (start, end)


@pytest.mark.parametrize(
    "month", ["2026-13", "2026-00", "2026-3", "26-03", "2026-03-01", "", "0000-01", "9999-12"]
)
def test_bad_months_are_invalid_requests(month: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        billing.month_bounds(month)
    assert exc.value.param == "month"


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0.000000"),
        (5, "0.000005"),
        (1_234_567, "1.234567"),
        (-1500, "-0.001500"),
        (10**18 + 1, "1000000000000.000001"),
    ],
)
def test_format_micros_is_exact(micros: int, text: str) -> None:
    assert billing.format_micros(micros) == text


def _line(model: str, region: str | None, currency: str, cost: int, n: int = 1) -> InvoiceLine:
    return InvoiceLine(
        model=model,
        region=region,
        currency=currency,
        requests=n,
        prompt_tokens=10 * n,
        cached_tokens=n,
        completion_tokens=2 * n,
        cost_micros=cost,
    )


def test_invoice_csv_exact_bytes_with_a_second_currency() -> None:
    inv = Invoice(
        workspace_id="ws_1",
        workspace_name="acme",
        month="2026-03",
        period_start=datetime(2026, 3, 1, tzinfo=UTC),
        period_end=datetime(2026, 4, 1, tzinfo=UTC),
        currency="USD",
        lines=[_line("a,b", None, "USD", 1_500_000, 2), _line("m", "eu", "EUR", 7)],
        requests=3,
        prompt_tokens=30,
        cached_tokens=3,
        completion_tokens=6,
        total_cost_micros=1_500_000,
        totals_by_currency={"EUR": 7, "USD": 1_500_000},
    )
    assert billing.invoice_csv(inv) == (
        "kind,workspace_id,month,model,region,currency,requests,prompt_tokens,cached_tokens,"
        "completion_tokens,cost_micros,cost\r\n"
        'line,ws_1,2026-03,"a,b",,USD,2,20,2,4,1500000,1.500000\r\n'
        "line,ws_1,2026-03,m,eu,EUR,1,10,1,2,7,0.000007\r\n"
        "total,ws_1,2026-03,,,USD,2,20,2,4,1500000,1.500000\r\n"
        "total,ws_1,2026-03,,,EUR,1,10,1,2,7,0.000007\r\n"
    )


def test_csv_cells_that_start_like_a_formula_are_quoted_as_text() -> None:
    assert [billing.csv_text(v) for v in ("=1+1", "+x", "-2", "@SUM(A1)", "\tx", "m", None)] == [
        "'=1+1", "'+x", "'-2", "'@SUM(A1)", "'\tx", "m", "",
    ]  # fmt: skip
    inv = Invoice(
        workspace_id="ws_1",
        workspace_name="acme",
        month="2026-03",
        period_start=datetime(2026, 3, 1, tzinfo=UTC),
        period_end=datetime(2026, 4, 1, tzinfo=UTC),
        currency="USD",
        lines=[_line("=HYPERLINK(1)", None, "USD", 5)],
        requests=1,
        prompt_tokens=10,
        cached_tokens=1,
        completion_tokens=2,
        total_cost_micros=5,
        totals_by_currency={"USD": 5},
    )
    assert billing.invoice_csv(inv).split("\r\n")[1] == (
        "line,ws_1,2026-03,'=HYPERLINK(1),,USD,1,10,1,2,5,0.000005"
    )


def _entry(p: Price) -> PriceEntry:
    return PriceEntry(
        p.id,
        p.model,
        p.region,
        p.currency,
        p.input_micros_per_1m,
        p.cached_input_micros_per_1m,
        p.output_micros_per_1m,
        p.effective_from.replace(tzinfo=UTC),
    )


async def _seed_prices(sessions: Any) -> PriceBook:
    """Two past prices for m1 (any region) and one for m1 in eu, written as the history
    would have been (the API refuses backdated entries, so these go in directly)."""
    async with sessions() as s, s.begin():
        for eff, region, inp, cached, out in [
            (datetime(2026, 3, 1, tzinfo=UTC), None, 1_000_000, 500_000, 2_000_000),
            (datetime(2026, 3, 15, tzinfo=UTC), None, 3_000_000, 1_000_000, 6_000_000),
            (datetime(2026, 3, 1, tzinfo=UTC), "eu", 700_000, 700_000, 1_400_000),
        ]:
            await repo.add_price(
                s,
                Price(
                    model="m1",
                    region=region,
                    currency="USD",
                    input_micros_per_1m=inp,
                    cached_input_micros_per_1m=cached,
                    output_micros_per_1m=out,
                    effective_from=eff,
                    created_at=eff,
                ),
            )
        return PriceBook(_entry(p) for p in await repo.list_prices(s))


def _priced(
    book: PriceBook, rid: str, at: datetime, ws: str, region: str | None, p: int, c: int, o: int
) -> dict[str, Any]:
    cost = book.price("m1", region, at, p, c, o)
    return usage_row(
        rid,
        at,
        workspace_id=ws,
        model="m1",
        region=region,
        prompt_tokens=p,
        cached_tokens=c,
        completion_tokens=o,
        cost_micros=cost.cost_micros,
        currency=cost.currency,
        price_id=cost.price_id,
    )


@BOTH_DATABASES
def test_price_effective_dates_and_a_new_price_never_changes_past_costs(
    database_url: str,
) -> None:
    async def go(sessions: Any) -> tuple[Any, Any, Any]:
        ws = await control_plane(sessions).workspaces.create(
            WorkspaceCreate(name="acme"), actor="t"
        )
        book = await _seed_prices(sessions)
        rows = [
            # before March 15 (per token: 1, 0.5 cached, 2 out): 999_000 + 500 + 666 = 1_000_166
            _priced(
                book,
                "early",
                datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC),
                ws.id,
                None,
                1_000_000,
                1_000,
                333,
            ),
            # from March 15 on (3 in, 6 out): 3_000 + 6_000 = 9_000
            _priced(book, "late", datetime(2026, 3, 15, tzinfo=UTC), ws.id, None, 1_000, 0, 1_000),
            # the region-specific entry wins in eu: 2_000_000 * 0.7 + 0 = 1_400_000
            _priced(book, "eu", datetime(2026, 3, 20, tzinfo=UTC), ws.id, "eu", 2_000_000, 0, 0),
        ]
        await insert_usage(sessions, rows)
        before = await billing.invoice(sessions, "acme", "2026-03")
        await control_plane(sessions, "m1").prices.add(
            PriceCreate(model="m1", input_micros_per_1m=9, output_micros_per_1m=9),
            actor="t",
        )
        after = await billing.invoice(sessions, ws.id, "2026-03")
        return rows, before, after

    rows, before, after = with_sessions(database_url, go)
    assert [r["cost_micros"] for r in rows] == [1_000_166, 9_000, 1_400_000]
    assert [r["price_id"] for r in rows] == [1, 2, 3]
    assert [(ln.region, ln.requests, ln.cost_micros) for ln in before.lines] == [
        (None, 2, 1_009_166),
        ("eu", 1, 1_400_000),
    ]
    assert before.total_cost_micros == 2_409_166
    assert after == before  # the new price book entry reaches no past request


@BOTH_DATABASES
def test_invoice_totals_equal_ledger_sums_exactly(database_url: str) -> None:
    rng = random.Random(4)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(400):
        at = start + timedelta(seconds=rng.randrange(0, 31 * 86400))
        rows.append(
            usage_row(
                f"r{i}",
                at,
                workspace_id="WS",
                model=rng.choice(["a", "b", "c"]),
                region=rng.choice([None, "eu", "us"]),
                prompt_tokens=rng.randrange(10**6),
                cached_tokens=rng.randrange(1000),
                completion_tokens=rng.randrange(10**5),
                cost_micros=rng.randrange(10**14),
                currency="USD",
            )
        )
    # the edges of January (in) and of December and February (out)
    rows += [
        usage_row("jan-first", start, workspace_id="WS", cost_micros=1, currency="USD"),
        usage_row(
            "jan-last",
            datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            workspace_id="WS",
            cost_micros=2,
            currency="USD",
        ),
        usage_row(
            "dec",
            start - timedelta(microseconds=1),
            workspace_id="WS",
            cost_micros=10**12,
            currency="USD",
        ),
        usage_row(
            "feb",
            datetime(2026, 2, 1, tzinfo=UTC),
            workspace_id="WS",
            cost_micros=10**12,
            currency="USD",
        ),
    ]
    january = [r for r in rows if r["request_id"] not in ("dec", "feb")]

    async def go(sessions: Any) -> Any:
        async with sessions() as s, s.begin():
            await repo.add_workspace(s, "WS", "big")
        await insert_usage(sessions, rows)
        return await billing.invoice(sessions, "WS", "2026-01")

    inv = with_sessions(database_url, go)
    assert inv.total_cost_micros == sum(r["cost_micros"] for r in january)
    assert inv.total_cost_micros > 2**53  # beyond what a float holds exactly
    assert inv.requests == len(january)
    assert inv.prompt_tokens == sum(r["prompt_tokens"] for r in january)
    for line in inv.lines:
        mine = [r for r in january if (r["model"], r["region"]) == (line.model, line.region)]
        assert line.cost_micros == sum(r["cost_micros"] for r in mine)
        assert line.completion_tokens == sum(r["completion_tokens"] for r in mine)
        assert line.requests == len(mine)
    assert inv.totals_by_currency == {"USD": inv.total_cost_micros}
    csv_total = billing.invoice_csv(inv).splitlines()[-1].split(",")
    assert int(csv_total[-2]) == inv.total_cost_micros


@BOTH_DATABASES
def test_unknown_workspace_and_empty_month(database_url: str) -> None:
    async def go(sessions: Any) -> Any:
        await control_plane(sessions).workspaces.create(
            WorkspaceCreate(name="quiet", currency="EUR"), actor="t"
        )
        with pytest.raises(NotFoundError):
            await billing.invoice(sessions, "nope", "2026-01")
        return await billing.invoice(sessions, "quiet", "2026-01")

    inv = with_sessions(database_url, go)
    assert (inv.lines, inv.total_cost_micros, inv.totals_by_currency) == ([], 0, {})
    last = f"total,{inv.workspace_id},2026-01,,,EUR,0,0,0,0,0,0.000000\r\n"
    assert billing.invoice_csv(inv).endswith(last)
