"""Queueing screens: closed forms that bound or approximate a region's queue, so the search
can discard most candidate fleets without simulating them.

A region's replicas of a model are modelled here as ONE pooled queue of ``c`` servers (M/M/c,
Erlang C), which the real fleet — a FIFO queue per replica and the router choosing among them
(power of two choices) — can only do worse than: the screen's replica count is a lower bound
that the simulation (``planner.sim``) then checks. Non-Poisson arrivals and non-exponential
service enter through the Allen-Cunneen factor ``(ca2 + cs2) / 2`` (squared coefficients of
variation of the gaps and of the service times), which scales the waiting time.

The waiting time ``W`` of a request is taken as 0 with probability ``1 - C`` and exponential
beyond, ``P(W > t) = C exp(-theta t)``, ``theta = (c mu - lambda) * 2 / (ca2 + cs2)``
(exact for M/M/c with FIFO). A request's time to first token at its replica is ``W`` plus its
own prefill ``P``, so ``P(W + P > t) = E_P[P(W > t - P)]``, averaged over prefill samples.
"""

from __future__ import annotations

import math

import numpy as np


def erlang_c(servers: int, offered: float) -> float:
    """The probability that an arrival waits in M/M/c (Erlang's C formula).

    Args:
        servers: ``c`` >= 1.
        offered: Offered load ``a = lambda / mu`` in erlangs.

    Returns:
        1.0 when ``a >= c`` (the queue grows without bound).
    """
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    # Erlang B by its stable recursion, then C from B.
    b = 1.0
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    rho = offered / servers
    return b / (1 - rho + rho * b)


def mmc_mean_wait(rate: float, service_s: float, servers: int) -> float:
    """Mean time in queue of M/M/c (s): ``C(c, a) / (c mu - lambda)``; ``inf`` if unstable."""
    mu = 1 / service_s
    if rate >= servers * mu:
        return math.inf
    return erlang_c(servers, rate * service_s) / (servers * mu - rate)


def wait_tail(
    rate: float, service_s: float, servers: int, ca2: float = 1.0, cs2: float = 1.0
) -> tuple[float, float]:
    """``(C, theta)`` with ``P(W > t) ~ C exp(-theta t)`` (t in s; see the module docstring).

    Returns:
        ``(1.0, 0.0)`` when the queue is unstable.
    """
    mu = 1 / service_s
    if rate >= servers * mu:
        return 1.0, 0.0
    factor = max((ca2 + cs2) / 2, 1e-6)
    return erlang_c(servers, rate * service_s), (servers * mu - rate) / factor


def ttft_quantile_ms(q: float, p_wait: float, theta_per_ms: float, prefill_ms: np.ndarray) -> float:
    """The ``q`` quantile of ``W + P`` (ms), ``P`` given by its samples, ``W`` by
    ``(p_wait, theta)`` (``theta`` per ms); ``inf`` for an unstable queue."""
    if theta_per_ms <= 0:
        return math.inf
    lo = float(np.quantile(prefill_ms, q))
    hi = lo + math.log(max(p_wait, 1e-12) / (1 - q)) / theta_per_ms + float(np.max(prefill_ms))
    hi = max(hi, lo)

    def exceed(t: float) -> float:
        slack = t - prefill_ms
        tail = np.where(slack < 0, 1.0, p_wait * np.exp(-theta_per_ms * np.maximum(slack, 0)))
        return float(np.mean(tail))

    a, b = lo, hi  # W + P >= P: its quantile is at least P's
    for _ in range(50):
        mid = (a + b) / 2
        if exceed(mid) > 1 - q:
            a = mid
        else:
            b = mid
        if b - a < 0.05:
            break
    return b


def ttft_at_replicas_ms(
    rate: float,
    servers: int,
    service_ms: np.ndarray,
    prefill_ms: np.ndarray,
    *,
    ca2: float = 1.0,
    q: float = 0.95,
    pooled: bool = False,
    choices: int = 2,
) -> float:
    """The ``q`` quantile of wait + prefill (ms) with ``servers`` replicas taking ``rate``
    requests per second.

    ``pooled``: one pooled queue (M/G/c with the Allen-Cunneen factor), a lower bound for
    the fleet. Otherwise the fleet as it runs: a FIFO queue per replica, the router sending
    each request to the shorter of ``choices`` replicas drawn at random (power of two
    choices; 1: a random replica). In the mean-field limit (Mitzenmacher, Vvedenskaya et
    al.) a replica has ``k`` or more requests with probability ``rho^((d^k - 1)/(d - 1))``,
    and a request joins a queue of ``k`` or more with that to the power ``d``; it then waits
    for the residual service of the one in service (length-biased) and ``k - 1`` full ones.
    The wait's distribution is sampled from ``service_ms`` (and scaled by the Kingman ratio
    ``(ca2 + cs2) / (1 + cs2)`` for non-Poisson arrivals); one replica is M/G/1 exactly.
    """
    service_ms = np.asarray(service_ms, dtype=np.float64)
    mean_s = float(np.mean(service_ms)) / 1000
    cs2 = float(np.var(service_ms) / max(np.mean(service_ms) ** 2, 1e-12))
    if pooled or servers == 1:
        p_wait, theta = wait_tail(rate, mean_s, servers, ca2, cs2)
        return ttft_quantile_ms(q, p_wait, theta / 1000, prefill_ms)
    rho = rate * mean_s / servers
    if rho >= 1:
        return math.inf
    d = max(1, min(choices, servers))
    at_least = []  # P(the joined queue holds k or more), k = 1, 2, ...
    k = 1
    while k <= 64:
        s_k = rho**k if d == 1 else rho ** ((d**k - 1) / (d - 1))
        p = s_k**d
        if p < 1e-5:
            break
        at_least.append(p)
        k += 1
    rng = np.random.default_rng(12345)
    n = 4096
    u = rng.random(n)
    ahead = np.searchsorted(-np.asarray([*at_least, 0.0]), -u, side="right")  # jobs ahead
    weights = service_ms / service_ms.sum()
    residual = rng.choice(service_ms, size=n, p=weights) * rng.random(n)
    full = rng.choice(service_ms, size=(n, max(len(at_least), 1)))
    before = np.cumsum(full, axis=1)
    extra = np.where(ahead > 1, before[np.arange(n), np.maximum(ahead - 2, 0)], 0.0)
    wait = np.where(ahead > 0, residual + extra, 0.0) * ((ca2 + cs2) / (1 + cs2))
    total = wait + rng.choice(np.asarray(prefill_ms, dtype=np.float64), size=n)
    return float(np.quantile(total, q))


def min_replicas(
    rate: float,
    service_ms: np.ndarray,
    prefill_ms: np.ndarray,
    budget_ms: float,
    *,
    ca2: float = 1.0,
    q: float = 0.95,
    max_utilisation: float = 0.98,
    pooled: bool = False,
    choices: int = 2,
    limit: int = 10_000,
) -> int | None:
    """The fewest replicas whose ``q`` quantile of wait + prefill is within ``budget_ms``
    (``ttft_at_replicas_ms``) and whose utilisation is at most ``max_utilisation``.

    Args:
        rate: Arrivals per second (0: no replica needed).
        service_ms: Samples of a request's service time (ms).
        prefill_ms: Samples of a request's prefill time (ms), drawn with ``service_ms``.
        budget_ms: What the wait and the prefill may take at the ``q`` quantile.
        ca2: Squared coefficient of variation of the arrivals' gaps.
        pooled: The lower bound (one pooled queue) or the estimate of the fleet as routed
            (a queue per replica, ``choices`` replicas compared per request).

    Returns:
        ``None`` when the prefill alone exceeds the budget (no number of replicas helps).
    """
    if rate <= 0:
        return 0
    if float(np.quantile(prefill_ms, q)) > budget_ms:
        return None
    mean_s = float(np.mean(service_ms)) / 1000
    c = max(1, math.ceil(rate * mean_s / max_utilisation))
    while c <= limit:
        got = ttft_at_replicas_ms(
            rate, c, service_ms, prefill_ms, ca2=ca2, q=q, pooled=pooled, choices=choices
        )
        if got <= budget_ms:
            return c
        c += 1 if c < 64 else max(1, c // 32)
    return None


__all__ = [
    "erlang_c",
    "min_replicas",
    "mmc_mean_wait",
    "ttft_at_replicas_ms",
    "ttft_quantile_ms",
    "wait_tail",
]
