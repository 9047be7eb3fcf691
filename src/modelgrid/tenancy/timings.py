"""Served requests' timings from the usage ledger (a read model for the planner's
recalibration, framework-free).

A row is written when its request ends (``created_at``), with its times to the first and
the last output token (``ttft_ms``, ``last_token_ms``) and to its end (``total_ms``), all
from the gateway's receipt of the request: it arrived at ``created_at - total_ms``. Read:
online (not batch) generation requests of one model that succeeded (status 200), produced
a token, name the replica that served them and hold ``last_token_ms`` (rows written before
it was recorded do not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from modelgrid.storage.models import UsageRecord
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions


def arrival(created_at: datetime, total_ms: int | None) -> datetime:
    """When a ledger row's request reached the gateway (UTC): the row is written when the
    request ends, ``total_ms`` after its receipt."""
    return aware(created_at) - timedelta(milliseconds=max(0, total_ms or 0))


@dataclass(frozen=True, slots=True)
class Served:
    """One served request.

    Attributes:
        arrived_at: When the gateway received it (UTC).
        ttft_ms / last_token_ms / total_ms: To its first and last output token and to its
            end, from ``arrived_at``.
        prompt_tokens: Prompt tokens not served from a prefix cache.
        output_tokens: Tokens generated.
        region / replica: Where it ran.
    """

    arrived_at: datetime
    ttft_ms: int
    last_token_ms: int
    total_ms: int
    prompt_tokens: int
    output_tokens: int
    region: str | None
    replica: str


async def read_served(
    sessions: Sessions,
    model: str,
    since: datetime,
    until: datetime,
    *,
    region: str | None = None,
) -> list[Served]:
    """The requests of ``model`` that arrived in ``[since, until)`` (and ended by
    ``until`` plus an hour), in arrival order; only ``region``'s when given."""
    since, until = aware(since), aware(until)
    stmt = (
        select(
            UsageRecord.created_at,
            UsageRecord.ttft_ms,
            UsageRecord.last_token_ms,
            UsageRecord.total_ms,
            UsageRecord.prompt_tokens,
            UsageRecord.cached_tokens,
            UsageRecord.completion_tokens,
            UsageRecord.region,
            UsageRecord.replica,
        )
        .where(UsageRecord.model == model)
        .where(UsageRecord.created_at >= since, UsageRecord.created_at < until + timedelta(hours=1))
        .where(UsageRecord.batch_id.is_(None))
        .where(UsageRecord.endpoint.not_like("%embedding%"))
        .where(UsageRecord.status == 200)
        .where(UsageRecord.ttft_ms.is_not(None), UsageRecord.last_token_ms.is_not(None))
        .where(UsageRecord.replica.is_not(None))
        .where(UsageRecord.completion_tokens > 0)
    )
    if region is not None:
        stmt = stmt.where(UsageRecord.region == region)
    async with sessions() as session:
        rows: Sequence[tuple[datetime, int, int, int, int, int, int, str | None, str]]
        rows = (await session.execute(stmt)).all()
    out = []
    for created, ttft, last, total, prompt, cached, completion, reg, replica in rows:
        arrived = arrival(created, total)
        if since <= arrived < until:
            uncached = max(1, prompt - cached)
            out.append(Served(arrived, ttft, last, total, uncached, completion, reg, replica))
    out.sort(key=lambda s: s.arrived_at)
    return out


__all__ = ["Served", "arrival", "read_served"]
