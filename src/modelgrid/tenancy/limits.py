"""Limit values attached to a principal: one ``ScopeLimits`` per level (workspace, key).

``None`` means "no limit at this level". Every applicable level must admit a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ScopeLimits:
    """Limits of one scope.

    Attributes:
        scope: Stable id used for counters, e.g. ``ws:ws_1a2b`` or ``key:0123456789ab``.
        rpm: Requests per minute.
        tpm: Tokens (prompt + completion) per minute.
        concurrency: Requests in flight.
        monthly_budget_micros: Spend per calendar month (UTC), micro-units of the currency.
        monthly_token_budget: Tokens per calendar month (UTC).
        tag: The shard of a shared limiter the scope's counters live in (``shard``); a key's
            is its workspace's, so that the levels one request is admitted at share one Redis
            Cluster slot. Empty: the scope itself.
    """

    scope: str
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    monthly_budget_micros: int | None = None
    monthly_token_budget: int | None = None
    tag: str = ""

    @classmethod
    def from_row(cls, scope: str, row: Any, tag: str = "") -> ScopeLimits:
        return cls(
            scope=scope,
            rpm=row.rpm_limit,
            tpm=row.tpm_limit,
            concurrency=row.concurrency_limit,
            monthly_budget_micros=row.monthly_budget_micros,
            monthly_token_budget=row.monthly_token_budget,
            tag=tag,
        )

    @property
    def shard(self) -> str:
        """``tag``, else the scope."""
        return self.tag or self.scope

    @property
    def unlimited(self) -> bool:
        return all(
            v is None
            for v in (
                self.rpm,
                self.tpm,
                self.concurrency,
                self.monthly_budget_micros,
                self.monthly_token_budget,
            )
        )


__all__ = ["ScopeLimits"]
