"""Routing policies: pure functions over snapshots (no I/O, no clocks, no request objects).

Like the SGLang router's ``select_worker(workers, text)``, each policy gets immutable
snapshots of the candidates and returns a choice, so it can be tested exhaustively (see the
property tests) and reasoned about on its own. The router (``routing.router``) builds the
snapshots from live health and load, applies residency, and calls these.

Two levels:

1. Regions (``rank_regions``): residency has already cut the candidates to the allowed set;
   the caller's requested region comes first, then the home region, then the rest by
   expected latency; regions with nothing available are dropped and saturated ones go last.
2. Replicas within a region (``choose_replica``): prefix-cache affinity — the replicas that
   served the same prompt prefix recently are likely to still hold its KV cache — unless
   such a replica's load exceeds the least-loaded one's by more than ``max_imbalance``
   (SGLang's cache-aware policy, llm-d's prefix scorer); otherwise power of two choices
   (Mitzenmacher): sample two, take the less loaded, which keeps the maximum queue
   exponentially closer to the mean than random choice without scanning every replica.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ReplicaSnapshot:
    """One replica as a policy sees it.

    Attributes:
        replica_id: Unique id.
        region: The region it is in.
        available: Ready, not drained, and its circuit breaker lets a request through.
        in_flight: Requests this gateway has running on it.
        queue_depth: Requests the replica reports waiting (0 when unknown).
        max_concurrency: Load at which it counts as saturated (``None``: never).
        cached_prefixes: Prompt-prefix blocks it served last (its prefix cache's size).
    """

    replica_id: str
    region: str
    available: bool = True
    in_flight: int = 0
    queue_depth: int = 0
    max_concurrency: int | None = None
    cached_prefixes: int = 0

    @property
    def load(self) -> int:
        return self.in_flight + self.queue_depth

    @property
    def saturated(self) -> bool:
        return self.max_concurrency is not None and self.load >= self.max_concurrency


@dataclass(frozen=True, slots=True)
class RegionSnapshot:
    """One allowed region that has the model.

    Attributes:
        region: Region id.
        latency_ms: Expected RTT from the gateway (``None``: unknown, ranked last).
        available: Replicas available in it.
        saturated: Every available replica is saturated.
    """

    region: str
    latency_ms: float | None
    available: int
    saturated: bool = False


def rank_regions(
    regions: Iterable[RegionSnapshot], *, preferred: str | None = None, home: str | None = None
) -> list[str]:
    """Region ids to try, best first.

    Regions without an available replica are left out. Unsaturated regions come before
    saturated ones; within each group the ``preferred`` region first, then ``home``, then
    by latency (unknown last), ties by id.
    """

    def key(r: RegionSnapshot) -> tuple[bool, int, float, str]:
        rank = 0 if r.region == preferred else 1 if r.region == home else 2
        latency = r.latency_ms if r.latency_ms is not None else float("inf")
        return (r.saturated, rank, latency, r.region)

    return [r.region for r in sorted((r for r in regions if r.available > 0), key=key)]


def power_of_two(
    replicas: Sequence[ReplicaSnapshot], rng: random.Random, *, spread_prefixes: bool = False
) -> ReplicaSnapshot:
    """The less loaded of two distinct replicas drawn at random (ties: the first drawn, or
    with ``spread_prefixes`` the one with the smaller prefix cache, so new prefixes spread
    over the replicas instead of piling onto one).

    Raises:
        ValueError: no replicas.
    """
    if not replicas:
        raise ValueError("no replicas to choose from")
    if len(replicas) == 1:
        return replicas[0]
    i, j = rng.sample(range(len(replicas)), 2)
    a, b = replicas[i], replicas[j]

    def key(r: ReplicaSnapshot) -> tuple[int, int]:
        return (r.load, r.cached_prefixes if spread_prefixes else 0)

    return b if key(b) < key(a) else a


def least_loaded(replicas: Sequence[ReplicaSnapshot]) -> ReplicaSnapshot:
    """The replica with the smallest load (ties: the first)."""
    return min(replicas, key=lambda r: r.load)


def round_robin(replicas: Sequence[ReplicaSnapshot], counter: int) -> ReplicaSnapshot:
    """The ``counter``-th replica, cyclically (the baseline the benchmark compares against)."""
    if not replicas:
        raise ValueError("no replicas to choose from")
    return replicas[counter % len(replicas)]


def prefix_affinity(
    replicas: Sequence[ReplicaSnapshot], owners: Sequence[str], max_imbalance: int
) -> ReplicaSnapshot | None:
    """The replica that recently served the prompt's prefix, if taking it is fair.

    Args:
        replicas: Available candidates.
        owners: Replica ids that served this prefix, most recent first.
        max_imbalance: How much more loaded than the least-loaded candidate an owner may be
            and still be chosen (requests in flight).

    Returns:
        The least-loaded eligible owner (ties: the most recent), or ``None``.
    """
    if not replicas or not owners:
        return None
    floor = min(r.load for r in replicas)
    by_id = {r.replica_id: r for r in replicas}
    eligible = [
        by_id[o]
        for o in owners
        if o in by_id and not by_id[o].saturated and by_id[o].load - floor <= max_imbalance
    ]
    return least_loaded(eligible) if eligible else None


def choose_replica(
    replicas: Sequence[ReplicaSnapshot],
    *,
    owners: Sequence[str] = (),
    rng: random.Random,
    max_imbalance: int = 2,
) -> ReplicaSnapshot:
    """Cache-aware choice within one region: an eligible prefix owner, else power of two
    choices among the unsaturated replicas (among all when every one is saturated), equal
    loads going to the replica with the smaller prefix cache.

    Raises:
        ValueError: no available replica.
    """
    available = [r for r in replicas if r.available]
    if not available:
        raise ValueError("no available replica")
    owner = prefix_affinity(available, owners, max_imbalance)
    if owner is not None:
        return owner
    unsaturated = [r for r in available if not r.saturated]
    return power_of_two(unsaturated or available, rng, spread_prefixes=True)


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What a replica policy may use besides the candidates.

    Attributes:
        owners: Replica ids that served the prompt's prefix, most recent first.
        rng: Randomness (power of two choices).
        counter: This router's request count (round robin).
        max_imbalance: See ``prefix_affinity``.
    """

    owners: Sequence[str] = ()
    rng: random.Random = field(default_factory=random.Random)
    counter: int = 0
    max_imbalance: int = 2


ReplicaPolicy = Callable[[Sequence[ReplicaSnapshot], PolicyContext], ReplicaSnapshot]
"""A replica choice within one region: available candidates in, the chosen one out."""


def cache_aware(replicas: Sequence[ReplicaSnapshot], ctx: PolicyContext) -> ReplicaSnapshot:
    """Prefix affinity, else power of two choices (``choose_replica``)."""
    return choose_replica(replicas, owners=ctx.owners, rng=ctx.rng, max_imbalance=ctx.max_imbalance)


def p2c(replicas: Sequence[ReplicaSnapshot], ctx: PolicyContext) -> ReplicaSnapshot:
    """Power of two choices, prefixes ignored."""
    return choose_replica(replicas, rng=ctx.rng, max_imbalance=ctx.max_imbalance)


def cyclic(replicas: Sequence[ReplicaSnapshot], ctx: PolicyContext) -> ReplicaSnapshot:
    """Round robin over the candidates."""
    return round_robin(replicas, ctx.counter)


POLICIES: dict[str, ReplicaPolicy] = {
    "cache_aware": cache_aware,
    "p2c": p2c,
    "round_robin": cyclic,
}
"""The replica policies by name (``MODELGRID_ROUTING__POLICY``; the planner drives them too),
as the SGLang router's policy factory."""


__all__ = [
    "POLICIES",
    "PolicyContext",
    "RegionSnapshot",
    "ReplicaPolicy",
    "ReplicaSnapshot",
    "cache_aware",
    "choose_replica",
    "cyclic",
    "least_loaded",
    "p2c",
    "power_of_two",
    "prefix_affinity",
    "rank_regions",
    "round_robin",
]
