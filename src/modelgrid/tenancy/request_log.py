"""The request log's reads over the usage ledger (``usage_records``): one row by request id,
and pages of rows, newest first, filtered by workspace, key, status class, model and region.

What the ledger holds per request: its time, id, the client's id, key, workspace, model,
region, the replica that answered (rows written before migration 0014 have none), endpoint,
status, finish reason, tokens (prompt, cached, completion), cost (integer micro-units and
currency), TTFT and total time in ms. It holds **no** prompt or answer text.

- ``find``: a primary-key lookup (``pk_usage_records``), whichever page the row would be on.
- ``page``: keyset-paged by (``created_at``, ``request_id``) descending; the next page starts
  ``before`` the last row shown (its id; the anchor's time is read by primary key), so a
  page costs the same at row 10 or row 10 million and never skips or repeats a row that
  arrived meanwhile. Two statements: the anchor, the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, not_, select

from modelgrid.core.errors import InvalidRequestError, NotFoundError
from modelgrid.storage.models import UsageRecord
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions

MAX_PAGE = 200
STATUS_CLASSES = ("2xx", "4xx", "5xx", "499")
"""The status filter's values: ``2xx`` (< 400), ``4xx`` (400-498), ``499`` (the client went
away), ``5xx`` (>= 500)."""


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One ledger row as the request log shows it (times in UTC; ``ttft_ms`` ``None`` where
    no token came)."""

    request_id: str
    client_request_id: str | None
    created_at: datetime
    workspace_id: str | None
    api_key_id: str | None
    model: str
    region: str | None
    replica: str | None
    endpoint: str
    status: int
    finish_reason: str | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_micros: int
    currency: str | None
    ttft_ms: int | None
    total_ms: int
    batch_id: str | None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _logged(r: UsageRecord) -> LoggedRequest:
    return LoggedRequest(
        request_id=r.request_id,
        client_request_id=r.client_request_id,
        created_at=aware(r.created_at),
        workspace_id=r.workspace_id,
        api_key_id=r.api_key_id,
        model=r.model,
        region=r.region,
        replica=r.replica,
        endpoint=r.endpoint,
        status=r.status,
        finish_reason=r.finish_reason,
        prompt_tokens=r.prompt_tokens,
        cached_tokens=r.cached_tokens,
        completion_tokens=r.completion_tokens,
        cost_micros=r.cost_micros,
        currency=r.currency,
        ttft_ms=r.ttft_ms,
        total_ms=r.total_ms,
        batch_id=r.batch_id,
    )


def _visible(r: UsageRecord, workspace_id: str | None, api_key_id: str | None) -> bool:
    return (workspace_id is None or r.workspace_id == workspace_id) and (
        api_key_id is None or r.api_key_id == api_key_id
    )


async def find(
    sessions: Sessions,
    request_id: str,
    *,
    workspace_id: str | None = None,
    api_key_id: str | None = None,
) -> LoggedRequest:
    """The ledger row of ``request_id``, if it is in ``workspace_id`` / of ``api_key_id``
    (``None``: any). One primary-key lookup.

    Raises:
        NotFoundError: no such request, or one outside the scope (not told apart).
    """
    rid = request_id.strip()
    if not rid or len(rid) > 64:
        raise NotFoundError("No request with that id.", param="request_id")
    async with sessions() as session:
        row = await session.get(UsageRecord, rid)
    if row is None or not _visible(row, workspace_id, api_key_id):
        raise NotFoundError(f"No request '{rid}'.", param="request_id")
    return _logged(row)


def _status_condition(status: str) -> Any:
    col = UsageRecord.status
    if status == "2xx":
        return col < 400
    if status == "4xx":
        return and_(col >= 400, col < 500, col != 499)
    if status == "499":
        return col == 499
    if status == "5xx":
        return col >= 500
    raise InvalidRequestError(
        f"status must be one of {', '.join(STATUS_CLASSES)}, not '{status[:20]}'.",
        param="status",
    )


async def page(
    sessions: Sessions,
    *,
    workspace_id: str | None = None,
    api_key_id: str | None = None,
    status: str | None = None,
    model: str | None = None,
    region: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> tuple[list[LoggedRequest], bool]:
    """A page of requests, newest first, and whether older ones match too.

    Args:
        workspace_id / api_key_id: The scope (``None``: any).
        status: A status class of ``STATUS_CLASSES`` (``None``: all).
        model / region: Exact matches (``None``: all).
        before: The request id of the previous page's last row.
        limit: Rows per page, 1 to ``MAX_PAGE``.

    Raises:
        InvalidRequestError: a bad status class or limit.
        NotFoundError: ``before`` is no request in the scope.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequestError(f"limit must be 1 to {MAX_PAGE}.", param="limit")
    u = UsageRecord
    conds: list[Any] = []
    if status:
        conds.append(_status_condition(status))
    for col, value in (
        (u.workspace_id, workspace_id),
        (u.api_key_id, api_key_id),
        (u.model, model),
        (u.region, region),
    ):
        if value is not None:
            conds.append(col == value)
    async with sessions() as session:
        if before is not None:
            anchor = await session.get(u, before)
            if anchor is None or not _visible(anchor, workspace_id, api_key_id):
                raise NotFoundError(f"No request '{before[:64]}'.", param="before")
            # ``<=`` on the time keeps the index range; the equal time's later ids left out
            conds.append(u.created_at <= anchor.created_at)
            conds.append(not_(and_(u.created_at == anchor.created_at, u.request_id >= before)))
        stmt = (select(u).where(*conds).order_by(u.created_at.desc(), u.request_id.desc())).limit(
            limit + 1
        )
        rows = list((await session.execute(stmt)).scalars())
    return [_logged(r) for r in rows[:limit]], len(rows) > limit


__all__ = ["MAX_PAGE", "STATUS_CLASSES", "LoggedRequest", "find", "page"]
