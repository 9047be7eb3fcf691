"""Admission control: RPM, TPM, concurrency and monthly budgets, checked before any engine work.

Rates are token buckets (capacity = the per-minute limit, refilled continuously at limit/60
per second), the model OpenAI documents for its own limits ("the rate limit replenishes
continuously"). Requests consume 1 from the request bucket; tokens are admitted on an
estimate (prompt tokens + the completion cap, see ``estimate_tokens``) and reconciled with
the real count when the request ends (``settle``), so the bucket may go into debt and later
requests wait. Concurrency counts requests in flight; monthly budgets compare the month's
spend (money and tokens, calendar month in UTC) with the limit and refuse once exhausted.

Budgets hold under concurrency: each admitted request *reserves* its worst case against every
budget it is under — ``tokens`` (prompt + completion cap) and ``reserve_micros`` (those tokens
at the model's highest per-token rate) — and a request is admitted only while the month's
spend plus the reservations of requests still running is below the budget. Settling replaces
the reservation with what the request really used. So N requests sent at once against a
nearly spent budget admit only until their worst cases cover what is left: the overspend is
at most one request's worst case, however many run concurrently.

Every level of a principal (workspace, key) must admit; admission consumes from all levels
at once or from none. Backends: ``InProcessLimiter`` here (the embedded default, one process)
and ``RedisLimiter`` (``ratelimit_redis``: the same algorithm in one atomic Lua script, so N
gateway processes share limits exactly).

Response headers follow OpenAI's names: ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` and the ``-tokens``
variants (https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers),
reporting the most restrictive level.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from modelgrid.core.errors import QuotaExceededError, RateLimitError
from modelgrid.tenancy.limits import ScopeLimits

DEFAULT_COMPLETION_ESTIMATE = 256
# (scope, "YYYY-MM") -> (spent_micros, spent_tokens) from the ledger, to seed month counters.
MonthSeed = Callable[[str, str], Awaitable[tuple[int, int]]]


def estimate_tokens(prompt_tokens: int, max_new_tokens: int | None, n: int = 1) -> int:
    """Tokens to admit before generation: prompt + n x the completion cap (capped at
    ``DEFAULT_COMPLETION_ESTIMATE`` per choice when the client set no ``max_tokens``)."""
    per_choice = DEFAULT_COMPLETION_ESTIMATE if max_new_tokens is None else max_new_tokens
    return prompt_tokens + n * per_choice


def month_key(at: datetime | None = None) -> str:
    at = at or datetime.now(UTC)
    return f"{at.year:04d}-{at.month:02d}"


def seconds_to_month_end(at: datetime | None = None) -> float:
    at = at or datetime.now(UTC)
    nxt = datetime(at.year + (at.month == 12), at.month % 12 + 1, 1, tzinfo=UTC)
    return (nxt - at).total_seconds()


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``250ms``, ``6s``, ``1m30s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, secs = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass(slots=True)
class Window:
    """What a bucket looked like after admission (for headers)."""

    limit: int
    remaining: float
    reset_s: float


@dataclass(slots=True)
class Admission:
    """A granted admission; hand it back to ``settle`` exactly once."""

    request_id: str
    limits: tuple[ScopeLimits, ...]
    estimate_tokens: int
    month: str
    reserve_micros: int = 0
    requests: Window | None = None
    tokens: Window | None = None
    settled: bool = False

    def headers(self) -> dict[str, str]:
        return window_headers(self.requests, self.tokens)


def window_headers(requests: Window | None, tokens: Window | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, w in (("requests", requests), ("tokens", tokens)):
        if w is not None:
            out[f"x-ratelimit-limit-{name}"] = str(w.limit)
            out[f"x-ratelimit-remaining-{name}"] = str(max(0, math.floor(w.remaining)))
            out[f"x-ratelimit-reset-{name}"] = duration(w.reset_s)
    return out


def tighter(a: Window | None, b: Window) -> Window:
    return b if a is None or b.remaining < a.remaining else a


def denial(
    kind: str, scope: str, limit: int, retry_after_s: float, headers: dict[str, str]
) -> RateLimitError:
    """The error for a refused admission (``kind``: rpm, tpm, concurrency, budget, token_budget)."""
    level = scope.split(":", 1)[0]
    who = {"ws": "workspace", "key": "API key"}.get(level, level)
    if kind in ("budget", "token_budget"):
        what = "monthly spend budget" if kind == "budget" else "monthly token budget"
        return QuotaExceededError(
            f"You exceeded the {what} of this {who} ({limit}). It renews at the start of next month (UTC).",
            retry_after_s=retry_after_s,
            headers=headers,
        )
    what = {
        "rpm": "requests per minute",
        "tpm": "tokens per minute",
        "concurrency": "concurrent requests",
    }[kind]
    code = "concurrency_limit_exceeded" if kind == "concurrency" else "rate_limit_exceeded"
    return RateLimitError(
        f"Rate limit reached for {what} on this {who}: limit {limit}. Please try again in {duration(retry_after_s)}.",
        retry_after_s=retry_after_s,
        code=code,
        headers=headers,
    )


def refuse_zero_limits(limits: tuple[ScopeLimits, ...]) -> None:
    """A limit of 0 admits nothing, ever: say so instead of computing a refill time.

    Raises:
        RateLimitError: code ``limit_is_zero`` (RPM, TPM or concurrency set to 0).
        QuotaExceededError: a monthly budget of 0.
    """
    for lim in limits:
        level = {"ws": "workspace", "key": "API key"}.get(lim.scope.split(":", 1)[0], "scope")
        for name, value in (("rpm", lim.rpm), ("tpm", lim.tpm), ("concurrency", lim.concurrency)):
            if value == 0:
                raise RateLimitError(
                    f"This {level}'s {name} limit is 0: no request can be admitted until an "
                    "administrator raises it.",
                    retry_after_s=3600,
                    code="limit_is_zero",
                )
        if lim.monthly_budget_micros == 0 or lim.monthly_token_budget == 0:
            raise QuotaExceededError(
                f"This {level}'s monthly budget is 0: no request can be admitted.",
                retry_after_s=seconds_to_month_end(),
            )


class RateLimiter(Protocol):
    async def acquire(
        self,
        request_id: str,
        limits: tuple[ScopeLimits, ...],
        tokens: int,
        reserve_micros: int = 0,
    ) -> Admission:
        """Admit one request at every level or raise; reserve ``tokens`` and
        ``reserve_micros`` against the monthly budgets until it settles.

        Raises:
            RateLimitError: an RPM, TPM or concurrency limit is reached (``retry_after_s`` set).
            QuotaExceededError: a monthly budget is exhausted.
        """
        ...

    async def settle(self, admission: Admission, actual_tokens: int, cost_micros: int) -> None:
        """Reconcile tokens, release concurrency, add to the month's spend. Idempotent."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Bucket:
    level: float
    at: float


@dataclass
class InProcessLimiter:
    """Exact limits for one process (the embedded default)."""

    seed: MonthSeed | None = None
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    _inflight: dict[str, set[str]] = field(default_factory=dict)
    _spend: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    _reserved: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def _level(self, scope: str, kind: str, capacity: int, now: float) -> _Bucket:
        b = self._buckets.get((scope, kind))
        if b is None:
            b = self._buckets[(scope, kind)] = _Bucket(float(capacity), now)
        else:
            b.level = min(float(capacity), b.level + (now - b.at) * capacity / 60.0)
            b.at = now
        return b

    async def _month(self, scope: str, month: str) -> list[int]:
        spent = self._spend.get((scope, month))
        if spent is None:
            micros, toks = await self.seed(scope, month) if self.seed else (0, 0)
            spent = self._spend.setdefault((scope, month), [micros, toks])
        return spent

    async def acquire(
        self,
        request_id: str,
        limits: tuple[ScopeLimits, ...],
        tokens: int,
        reserve_micros: int = 0,
    ) -> Admission:
        refuse_zero_limits(limits)
        month = month_key()
        for lim in limits:  # seeding awaits: do it before the atomic check-and-consume
            if lim.monthly_budget_micros is not None or lim.monthly_token_budget is not None:
                await self._month(lim.scope, month)
        now = self.clock()
        adm = Admission(request_id, limits, tokens, month, reserve_micros)
        for lim in limits:
            if lim.rpm is not None:
                b = self._level(lim.scope, "rpm", lim.rpm, now)
                w = Window(lim.rpm, b.level - 1, (lim.rpm - b.level + 1) * 60 / lim.rpm)
                if b.level < 1:
                    now_w = Window(lim.rpm, b.level, (lim.rpm - b.level) * 60 / lim.rpm)
                    raise denial(
                        "rpm",
                        lim.scope,
                        lim.rpm,
                        (1 - b.level) * 60 / lim.rpm,
                        window_headers(now_w, None),
                    )
                adm.requests = tighter(adm.requests, w)
            if lim.tpm is not None:
                b = self._level(lim.scope, "tpm", lim.tpm, now)
                want = min(tokens, lim.tpm)
                w = Window(lim.tpm, b.level - tokens, (lim.tpm - b.level + tokens) * 60 / lim.tpm)
                if b.level < want:
                    now_w = Window(lim.tpm, b.level, (lim.tpm - b.level) * 60 / lim.tpm)
                    raise denial(
                        "tpm",
                        lim.scope,
                        lim.tpm,
                        (want - b.level) * 60 / lim.tpm,
                        window_headers(None, now_w),
                    )
                adm.tokens = tighter(adm.tokens, w)
            if (
                lim.concurrency is not None
                and len(self._inflight.get(lim.scope, ())) >= lim.concurrency
            ):
                raise denial("concurrency", lim.scope, lim.concurrency, 1.0, adm.headers())
            if lim.monthly_budget_micros is None and lim.monthly_token_budget is None:
                continue
            spent = self._spend.get((lim.scope, month), [0, 0])
            held = self._reserved.get((lim.scope, month), [0, 0])
            spent = [spent[0] + held[0], spent[1] + held[1]]  # running requests' worst cases
            if lim.monthly_budget_micros is not None and spent[0] >= lim.monthly_budget_micros:
                raise denial(
                    "budget",
                    lim.scope,
                    lim.monthly_budget_micros,
                    seconds_to_month_end(),
                    adm.headers(),
                )
            if lim.monthly_token_budget is not None and spent[1] >= lim.monthly_token_budget:
                raise denial(
                    "token_budget",
                    lim.scope,
                    lim.monthly_token_budget,
                    seconds_to_month_end(),
                    adm.headers(),
                )
        for lim in limits:  # every level admitted: consume from all of them
            if lim.rpm is not None:
                self._buckets[(lim.scope, "rpm")].level -= 1
            if lim.tpm is not None:
                self._buckets[(lim.scope, "tpm")].level -= tokens
            if lim.concurrency is not None:
                self._inflight.setdefault(lim.scope, set()).add(request_id)
            if lim.monthly_budget_micros is not None or lim.monthly_token_budget is not None:
                held = self._reserved.setdefault((lim.scope, month), [0, 0])
                held[0] += reserve_micros
                held[1] += tokens
        return adm

    async def settle(self, admission: Admission, actual_tokens: int, cost_micros: int) -> None:
        if admission.settled:
            return
        admission.settled = True
        now = self.clock()
        for lim in admission.limits:
            if lim.tpm is not None:
                b = self._level(lim.scope, "tpm", lim.tpm, now)
                b.level = min(float(lim.tpm), b.level + admission.estimate_tokens - actual_tokens)
            if lim.concurrency is not None:
                self._inflight.get(lim.scope, set()).discard(admission.request_id)
            if lim.monthly_budget_micros is not None or lim.monthly_token_budget is not None:
                held = self._reserved.get((lim.scope, admission.month), [0, 0])
                held[0] = max(0, held[0] - admission.reserve_micros)
                held[1] = max(0, held[1] - admission.estimate_tokens)
                spent = await self._month(lim.scope, admission.month)
                spent[0] += cost_micros
                spent[1] += actual_tokens

    async def aclose(self) -> None:
        return None


__all__ = [
    "Admission",
    "InProcessLimiter",
    "MonthSeed",
    "RateLimiter",
    "Window",
    "denial",
    "duration",
    "estimate_tokens",
    "month_key",
    "refuse_zero_limits",
    "window_headers",
]
