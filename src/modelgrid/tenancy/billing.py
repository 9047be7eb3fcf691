"""Billing's read side: the usage ledger and invoices (the price book is written by
``control.prices``).

The metering path prices each request once, when it is recorded (``tenancy.pricing``), and
stores the integer ``cost_micros`` with the ``price_id`` it used. An invoice only sums those
stored integers, in SQL, per (model, region, currency): it never re-prices, never uses a
float, and its totals equal the sums of its ledger rows exactly. Price entries are never
updated and cannot take effect in the past, so a price change never alters what a past
request cost. Months are calendar months in UTC: ``[YYYY-MM-01T00:00Z, next month)``.

CSV (RFC 4180, ``\\r\\n`` line ends) has one row per invoice line then one ``total`` row per
currency; ``cost`` is ``cost_micros`` written as an exact decimal (``1234567`` → ``1.234567``).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime

from modelgrid.core.errors import InvalidRequestError, NotFoundError
from modelgrid.protocol.admin import (
    Invoice,
    InvoiceLine,
    UsageObject,
    UsagePage,
    UsageTotals,
)
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import UsageRecord
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions, find_workspace

MAX_PAGE = 1000
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of the calendar month ``YYYY-MM`` in UTC.

    Raises:
        InvalidRequestError: not ``YYYY-MM``.
    """
    m = _MONTH.match(month)
    if m is None or not 1 <= int(m.group(1)) <= 9998:
        raise InvalidRequestError(
            f"month must be YYYY-MM with a year from 0001 to 9998, got '{month}'.", param="month"
        )
    return repo.month_bounds(month)


def format_micros(micros: int) -> str:
    """Exact decimal text of an amount in micro-units (no float): ``-1500`` → ``-0.001500``."""
    sign = "-" if micros < 0 else ""
    units, frac = divmod(abs(micros), 1_000_000)
    return f"{sign}{units}.{frac:06d}"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str | None) -> str:
    """A text cell safe to open in a spreadsheet: a value that starts like a formula gets a
    leading ``'`` (OWASP's CSV-injection advice); ``None`` is ``''``. Numbers are written
    as they are, never through this."""
    if not value:
        return ""
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def usage_object(r: UsageRecord) -> UsageObject:
    data = {c: getattr(r, c) for c in UsageObject.model_fields if c != "object"}
    data["created_at"] = aware(r.created_at)
    return UsageObject(**data)


async def usage(
    sessions: Sessions,
    *,
    workspace: str | None = None,
    month: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> UsagePage:
    """A page of ledger rows (oldest first) and the totals over every matching row.

    Args:
        workspace: Workspace id or name (None: all workspaces).
        month: ``YYYY-MM`` in UTC (None: all time).
        limit: Rows per page, 1 to ``MAX_PAGE``.
        after: ``last_id`` of the previous page.

    Raises:
        NotFoundError: no such workspace, or no record ``after``. InvalidRequestError: a
            bad month or limit.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequestError(f"limit must be 1 to {MAX_PAGE}.", param="limit")
    start, end = month_bounds(month) if month is not None else (None, None)
    async with sessions() as session:
        ws_id = None if workspace is None else (await find_workspace(session, workspace)).id
        if after is not None and await session.get(UsageRecord, after) is None:
            # an unknown cursor is no page: answering the first one would loop a client
            raise NotFoundError(
                f"No usage record '{after[:64]}'.", param="after", code="usage_record_not_found"
            )
        rows = await repo.usage_page(
            session, limit=limit + 1, after=after, workspace_id=ws_id, start=start, end=end
        )
        sums = await repo.usage_sums(session, workspace_id=ws_id, start=start, end=end)
    data = [usage_object(r) for r in rows[:limit]]
    totals = UsageTotals()
    for s in sums:
        totals.requests += s.requests
        totals.prompt_tokens += s.prompt_tokens
        totals.cached_tokens += s.cached_tokens
        totals.completion_tokens += s.completion_tokens
        if s.currency is not None:
            totals.cost_micros[s.currency] = totals.cost_micros.get(s.currency, 0) + s.cost_micros
    return UsagePage(
        data=data,
        has_more=len(rows) > limit,
        last_id=data[-1].request_id if data else None,
        totals=totals,
    )


# --- invoices --------------------------------------------------------------------------------


async def invoice(sessions: Sessions, workspace: str, month: str) -> Invoice:
    """The invoice of ``workspace`` (id or name) for ``month`` (``YYYY-MM``, UTC).

    Lines are per (model, region, currency), online requests and batch lines apart (a batch
    line follows its online line), sorted; unpriced rows (cost 0, no currency) are listed in
    the workspace's currency.

    Raises:
        NotFoundError: no such workspace. InvalidRequestError: a bad month.
    """
    start, end = month_bounds(month)
    async with sessions() as session:
        ws = await find_workspace(session, workspace)
        sums = await repo.usage_sums(session, workspace_id=ws.id, start=start, end=end)
    merged: dict[tuple[str, str | None, str, bool], list[int]] = {}
    for s in sums:
        acc = merged.setdefault((s.model, s.region, s.currency or ws.currency, s.batch), [0] * 5)
        for i, v in enumerate(
            (s.requests, s.prompt_tokens, s.cached_tokens, s.completion_tokens, s.cost_micros)
        ):
            acc[i] += v
    lines = [
        InvoiceLine(
            model=model,
            region=region,
            currency=cur,
            requests=v[0],
            prompt_tokens=v[1],
            cached_tokens=v[2],
            completion_tokens=v[3],
            cost_micros=v[4],
            batch=batch,
        )
        for (model, region, cur, batch), v in sorted(
            merged.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2], kv[0][3])
        )
    ]
    by_currency: dict[str, int] = {}
    for line in lines:
        by_currency[line.currency] = by_currency.get(line.currency, 0) + line.cost_micros
    return Invoice(
        workspace_id=ws.id,
        workspace_name=ws.name,
        month=month,
        period_start=start,
        period_end=end,
        currency=ws.currency,
        lines=lines,
        requests=sum(line.requests for line in lines),
        prompt_tokens=sum(line.prompt_tokens for line in lines),
        cached_tokens=sum(line.cached_tokens for line in lines),
        completion_tokens=sum(line.completion_tokens for line in lines),
        total_cost_micros=by_currency.get(ws.currency, 0),
        totals_by_currency=dict(sorted(by_currency.items())),
    )


CSV_HEADER = (
    "kind",
    "workspace_id",
    "month",
    "model",
    "region",
    "currency",
    "requests",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost_micros",
    "cost",
)


def invoice_csv(inv: Invoice) -> str:
    """The invoice as CSV: a header, one ``line`` row per line (``batch`` for batch lines),
    one ``total`` row per currency (the workspace's currency first, even when it is zero)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_HEADER)
    for ln in inv.lines:
        w.writerow(
            (
                "batch" if ln.batch else "line",
                csv_text(inv.workspace_id),
                inv.month,
                csv_text(ln.model),
                csv_text(ln.region),
                ln.currency,
                ln.requests,
                ln.prompt_tokens,
                ln.cached_tokens,
                ln.completion_tokens,
                ln.cost_micros,
                format_micros(ln.cost_micros),
            )
        )
    currencies = [inv.currency] + [c for c in inv.totals_by_currency if c != inv.currency]
    for cur in currencies:
        mine = [ln for ln in inv.lines if ln.currency == cur]
        cost = inv.totals_by_currency.get(cur, 0)
        w.writerow(
            (
                "total",
                csv_text(inv.workspace_id),
                inv.month,
                "",
                "",
                cur,
                sum(ln.requests for ln in mine),
                sum(ln.prompt_tokens for ln in mine),
                sum(ln.cached_tokens for ln in mine),
                sum(ln.completion_tokens for ln in mine),
                cost,
                format_micros(cost),
            )
        )
    return buf.getvalue()


__all__ = [
    "CSV_HEADER",
    "format_micros",
    "invoice",
    "invoice_csv",
    "month_bounds",
    "usage",
    "usage_object",
]
