"""The in-process limiter's algorithm, on a controlled clock."""

from __future__ import annotations

import asyncio

import pytest

from modelgrid.core.errors import QuotaExceededError, RateLimitError
from modelgrid.tenancy.limits import ScopeLimits
from modelgrid.tenancy.ratelimit import InProcessLimiter, duration, estimate_tokens
from tests.clock import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_rpm_bucket_refills_continuously(clock: Clock) -> None:
    lim = InProcessLimiter(clock=clock)
    limits = (ScopeLimits("ws:a", rpm=3),)
    for i in range(3):
        adm = await lim.acquire(f"r{i}", limits, 10)
        assert adm.headers()["x-ratelimit-remaining-requests"] == str(2 - i)
    with pytest.raises(RateLimitError) as exc:
        await lim.acquire("r3", limits, 10)
    assert exc.value.code == "rate_limit_exceeded"
    assert exc.value.retry_after_s == pytest.approx(20.0)  # 1 request every 60/3 s
    assert exc.value.headers["x-ratelimit-limit-requests"] == "3"
    assert exc.value.headers["x-ratelimit-remaining-requests"] == "0"
    clock.now += 20.0
    await lim.acquire("r4", limits, 10)


async def test_tpm_admits_on_estimate_and_reconciles(clock: Clock) -> None:
    lim = InProcessLimiter(clock=clock)
    limits = (ScopeLimits("key:k", tpm=1000),)
    adm = await lim.acquire("a", limits, 800)
    assert adm.headers()["x-ratelimit-remaining-tokens"] == "200"
    with pytest.raises(RateLimitError):
        await lim.acquire("b", limits, 300)
    await lim.settle(adm, actual_tokens=100, cost_micros=0)  # refund 700
    adm2 = await lim.acquire("b", limits, 300)
    assert adm2.headers()["x-ratelimit-remaining-tokens"] == "600"


async def test_request_larger_than_tpm_is_admitted_only_on_a_full_bucket(clock: Clock) -> None:
    lim = InProcessLimiter(clock=clock)
    limits = (ScopeLimits("key:k", tpm=100),)
    await lim.acquire("a", limits, 500)  # full bucket admits it; the bucket goes into debt
    with pytest.raises(RateLimitError) as exc:
        await lim.acquire("b", limits, 10)
    assert exc.value.retry_after_s == pytest.approx((10 + 400) * 60 / 100)


async def test_concurrency_is_released_on_settle(clock: Clock) -> None:
    lim = InProcessLimiter(clock=clock)
    limits = (ScopeLimits("ws:a", concurrency=1),)
    adm = await lim.acquire("a", limits, 1)
    with pytest.raises(RateLimitError) as exc:
        await lim.acquire("b", limits, 1)
    assert exc.value.code == "concurrency_limit_exceeded"
    await lim.settle(adm, 1, 0)
    await lim.settle(adm, 1, 0)  # idempotent
    await lim.acquire("b", limits, 1)


async def test_all_levels_or_none(clock: Clock) -> None:
    lim = InProcessLimiter(clock=clock)
    ws, key = ScopeLimits("ws:a", rpm=10), ScopeLimits("key:k", rpm=1)
    await lim.acquire("a", (ws, key), 1)
    with pytest.raises(RateLimitError):
        await lim.acquire("b", (ws, key), 1)  # the key refuses: the workspace must not be charged
    other_key = ScopeLimits("key:j", rpm=100)
    adm = await lim.acquire("c", (ws, other_key), 1)
    assert adm.headers()["x-ratelimit-remaining-requests"] == "8"


async def test_monthly_budget_seeded_from_ledger_and_enforced(clock: Clock) -> None:
    async def seed(scope: str, month: str) -> tuple[int, int]:
        return (900, 50) if scope == "ws:a" else (0, 0)

    lim = InProcessLimiter(seed=seed, clock=clock)
    limits = (ScopeLimits("ws:a", monthly_budget_micros=1000),)
    adm = await lim.acquire("a", limits, 10)
    await lim.settle(adm, 10, 150)  # 900 + 150 >= 1000: exhausted
    with pytest.raises(QuotaExceededError) as exc:
        await lim.acquire("b", limits, 10)
    assert (exc.value.status, exc.value.code, exc.value.type) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    tokens = (ScopeLimits("ws:a", monthly_token_budget=60),)
    with pytest.raises(QuotaExceededError):
        await lim.acquire("c", tokens, 1)  # 50 + 10 tokens used


def test_formats() -> None:
    assert [duration(s) for s in (0.25, 1, 6.2, 90, 3600)] == [
        "250ms",
        "1s",
        "7s",
        "1m30s",
        "60m0s",
    ]
    assert estimate_tokens(100, None) == 356
    assert estimate_tokens(100, 20, n=2) == 140


@pytest.mark.parametrize(
    ("limit", "error"),
    [
        (ScopeLimits("key:k", rpm=0), RateLimitError),
        (ScopeLimits("key:k", tpm=0), RateLimitError),
        (ScopeLimits("ws:a", concurrency=0), RateLimitError),
        (ScopeLimits("ws:a", monthly_budget_micros=0), QuotaExceededError),
    ],
)
async def test_a_zero_limit_refuses_clearly(clock: Clock, limit: ScopeLimits, error: type) -> None:
    with pytest.raises(error) as exc:
        await InProcessLimiter(clock=clock).acquire("a", (limit,), 1)
    assert "is 0" in exc.value.message


async def test_refusal_headers_describe_the_bucket_as_it_is(clock: Clock) -> None:
    lim = InProcessLimiter(clock=clock)
    limits = (ScopeLimits("ws:a", rpm=3),)
    for i in range(3):
        await lim.acquire(f"r{i}", limits, 1)
    with pytest.raises(RateLimitError) as exc:
        await lim.acquire("r3", limits, 1)
    assert exc.value.headers["x-ratelimit-reset-requests"] == "1m0s"  # empty bucket: 60 s to full


async def test_sixteen_at_once_against_a_nearly_spent_budget_reserve_their_worst_case(
    clock: Clock,
) -> None:
    async def seed(_scope: str, _month: str) -> tuple[int, int]:
        return 900, 900  # 900 of 1000 micros and 900 of 1000 tokens already spent

    lim = InProcessLimiter(seed=seed, clock=clock)
    for limits, worst in (
        ((ScopeLimits("ws:tok", monthly_token_budget=1000),), (60, 0)),
        ((ScopeLimits("ws:money", monthly_budget_micros=1000),), (1, 60)),
    ):
        results = await asyncio.gather(
            *(lim.acquire(f"r{i}", limits, worst[0], worst[1]) for i in range(16)),
            return_exceptions=True,
        )
        admitted = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, QuotaExceededError)]
        # 900 spent + 60 reserved < 1000 admits a second; 900 + 120 >= 1000 refuses the rest.
        assert (len(admitted), len(refused)) == (2, 14)
        for adm in admitted:  # each used its worst case
            await lim.settle(adm, actual_tokens=worst[0], cost_micros=worst[1])
        spent = lim._spend[(limits[0].scope, admitted[0].month)]
        assert max(spent) == 1020  # over by less than one request's worst case (60)
        with pytest.raises(QuotaExceededError):
            await lim.acquire("late", limits, 1, 0)


async def test_a_settled_request_frees_its_reservation_for_the_next(clock: Clock) -> None:
    async def seed(_scope: str, _month: str) -> tuple[int, int]:
        return 0, 900

    lim = InProcessLimiter(seed=seed, clock=clock)
    limits = (ScopeLimits("ws:r", monthly_token_budget=1000),)
    first = await lim.acquire("a", limits, 200)  # worst case 200: 900 + 200 covers it
    with pytest.raises(QuotaExceededError):
        await lim.acquire("b", limits, 10)
    await lim.settle(first, actual_tokens=20, cost_micros=0)  # used 20: 920 spent
    await lim.acquire("b", limits, 10)
