"""Usage as CSV, streamed: the day roll-ups (``usage_rollups``) summed per (day, workspace,
key, model, region, currency) over a range of days, with the usage table's filters
(``usage_reports.day_lines_query``, the usage table's query), every line and no limit.

One SQL statement, read through a server-side cursor (``AsyncSession.stream``) and written
as it comes, so a year of a busy cloud never sits in memory. The numbers are the roll-ups'
integers, which equal the ledger's sums exactly (``storage.rollups``); ``cost`` is
``cost_micros`` as an exact decimal. CSV per RFC 4180 (``\\r\\n`` line ends).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any

from modelgrid.core.errors import InvalidRequestError
from modelgrid.storage import rollups
from modelgrid.tenancy import usage_reports
from modelgrid.tenancy.billing import csv_text, format_micros
from modelgrid.tenancy.lookup import Sessions

CSV_HEADER = (
    "day",
    "workspace_id",
    "api_key_id",
    "model",
    "region",
    "currency",
    "requests",
    "errors",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost_micros",
    "cost",
)
MAX_DAYS = 400
_ROWS_PER_CHUNK = 500


def _day(ts: Any) -> str:
    """A bucket start as read back (SQLite: naive, or the stored text) as ``YYYY-MM-DD``."""
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return rollups.utc(ts).date().isoformat()


def _line(writer: Any, buf: io.StringIO, values: tuple[Any, ...]) -> str:
    buf.seek(0)
    buf.truncate()
    writer.writerow(values)
    return buf.getvalue()


async def usage_csv(
    sessions: Sessions,
    *,
    first_day: date,
    last_day: date,
    workspace_id: str | None = None,
    api_key_id: str | None = None,
    model: str | None = None,
    region: str | None = None,
) -> AsyncIterator[str]:
    """The CSV's text in chunks: the header, then one line per (day, workspace, key, model,
    region, currency), ordered by them; ``''`` where the ledger had none (no key, the
    embedded region, unpriced).

    Raises:
        InvalidRequestError: ``last_day`` before ``first_day``, or more than ``MAX_DAYS``
            days (raised before the first chunk).
    """
    if last_day < first_day:
        raise InvalidRequestError("last_day is before first_day.", param="last_day")
    if (last_day - first_day).days + 1 > MAX_DAYS:
        raise InvalidRequestError(f"at most {MAX_DAYS} days at once.", param="first_day")
    stmt = usage_reports.day_lines_query(
        first_day,
        last_day,
        workspace_id=workspace_id,
        api_key_id=api_key_id,
        model=model,
        region=region,
    )
    return _stream(sessions, stmt)


async def _stream(sessions: Sessions, stmt: Any) -> AsyncIterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    yield _line(writer, buf, CSV_HEADER)
    chunk: list[str] = []
    async with sessions() as session:
        result = await session.stream(stmt)
        async for b, ws, key, m, reg, cur, *sums in result:
            cost = int(sums[-1])
            values = (_day(b), *(csv_text(v) for v in (ws, key, m, reg)), cur)
            chunk.append(
                _line(writer, buf, (*values, *(int(x) for x in sums), format_micros(cost)))
            )
            if len(chunk) >= _ROWS_PER_CHUNK:
                yield "".join(chunk)
                chunk.clear()
    if chunk:
        yield "".join(chunk)


__all__ = ["CSV_HEADER", "MAX_DAYS", "usage_csv"]
