"""The router: residency first, then region preference, then a replica; failure bookkeeping.

``Router.pick(model, hints, blocks, exclude)`` answers "where does this request go":

1. **Residency.** The allowed set is the regions where the model is deployed that pass the
   caller's ``allowed_regions`` and ``allowed_jurisdictions`` (each ``None`` = any;
   ``RoutingHints.allows``). A requested region outside the
   caller's set, or an empty allowed set, is a 403 (``region_not_allowed``): modelgrid never
   sends a request — or writes its content anywhere — outside that set, even to fail over.
2. **Region.** Among allowed regions with an available replica (ready, not drained, breaker
   not open, not already tried): the requested region, then the home region, then by
   latency from the gateway (configured matrix, or probe round trips), saturated ones last
   (``policies.rank_regions``). When every allowed replica is held back by its circuit
   breaker alone, one of them gets the request as a trial (the one whose cool-down ends
   first): a deployment is never locked out by its own breakers. None available at all: 503
   with ``Retry-After`` set to when the first breaker half-opens.
3. **Replica.** Within the chosen region, the configured policy: ``cache_aware`` (prefix
   affinity, else power of two choices), ``p2c``, or ``round_robin`` (``policies``). A
   chained conversation's previous replica (``RoutingHints.affinity_replica``) counts as the
   first prefix owner, and its region is chosen unless the caller asked for a region.

The caller reports each attempt (``begin``/``end``), which keeps in-flight counts and feeds
the circuit breakers; ``served`` records the prompt prefix for affinity. ``retryable`` says
whether a failure before the first byte may be retried on another replica.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from modelgrid.config import RoutingSettings
from modelgrid.core.errors import (
    InvalidRequestError,
    ModelgridError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from modelgrid.core.types import RoutingHints
from modelgrid.routing import policies
from modelgrid.routing.health import HealthBook, ReplicaHealth
from modelgrid.routing.policies import RegionSnapshot, ReplicaSnapshot
from modelgrid.routing.prefix import PrefixTable
from modelgrid.routing.topology import Deployment, Replica, Topology

T = TypeVar("T")
REGION_HEADER = "X-Modelgrid-Region"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one attempt of a request runs.

    Attributes:
        model / region / replica_id: The deployment and replica.
        matched_blocks: Prompt-prefix blocks the replica had served before (0: none).
    """

    model: str
    region: str
    replica_id: str
    matched_blocks: int = 0


class Outcome(StrEnum):
    SUCCESS = "success"  # the replica answered (a 4xx about the request included)
    FAILURE = "failure"  # the replica failed (connection, 5xx, dropped stream)
    ABANDONED = "abandoned"  # the client went away; no verdict on the replica


def retryable(exc: BaseException) -> bool:
    """Whether a failure *before the first byte* may be retried on another replica: a
    connection error, or a server-side ``ModelgridError`` (5xx, or marked ``retryable``,
    e.g. an overloaded replica's 429). Client errors (4xx) would fail anywhere."""
    if isinstance(exc, ModelgridError):
        return exc.retryable or exc.status >= 500
    return isinstance(exc, OSError)


def is_replica_failure(exc: BaseException) -> bool:
    """Whether ``exc`` counts against the replica's health (not a client error, not load,
    not the death of a supervised engine process: its supervisor judges that)."""
    if isinstance(exc, ModelgridError):
        return exc.status >= 500 and exc.replica_fault
    return isinstance(exc, Exception)


def verdict(exc: Exception) -> tuple[Outcome, str]:
    """How an attempt that raised ``exc`` counts for its replica (``Router.end``), and why."""
    outcome = Outcome.FAILURE if is_replica_failure(exc) else Outcome.SUCCESS
    return outcome, f"{type(exc).__name__}: {getattr(exc, 'message', '')}"[:200]


def _spent(replica: Replica, tried: Collection[str]) -> bool:
    """Whether a request has used its attempts on ``replica`` (``tried``: the replica of each
    attempt so far; a pool, ``Replica.attempts`` > 1, may be tried that many times)."""
    if replica.id not in tried:
        return False
    return replica.attempts == 1 or sum(rid == replica.id for rid in tried) >= replica.attempts


RESERVATION_S = 2.0  # how long a placement not yet sent counts as in flight (``reserve``)


def _reserved(h: ReplicaHealth) -> int:
    """``h``'s reservations that have not expired (the expired ones dropped)."""
    now = time.monotonic()
    while h.reserved and h.reserved[0] <= now:
        h.reserved.popleft()
    return len(h.reserved)


class Router:
    """Picks replicas for requests (see the module docstring).

    Args:
        topology: The current topology (swap with ``set_topology``).
        config: The routing settings (``Settings.routing``; policy, attempts, prefix
            fingerprint, latency source).
        health: Breakers, loads and probe results by replica id.
        rng: Randomness for power of two choices (seed it in tests).
        ready: Whether a replica's engine can take requests (a local model still loading
            cannot); default: all ready.
        queue_depth: A replica's own queue (local engines know theirs); default: the last
            probe's figure.
    """

    def __init__(
        self,
        topology: Topology,
        *,
        config: RoutingSettings | None = None,
        health: HealthBook | None = None,
        rng: random.Random | None = None,
        ready: Callable[[str], bool] | None = None,
        queue_depth: Callable[[str], int | None] | None = None,
    ) -> None:
        self.config = config or RoutingSettings()
        if self.config.policy not in policies.POLICIES:
            raise ValueError(f"unknown routing policy {self.config.policy!r}")
        self._policy = policies.POLICIES[self.config.policy]
        self.health = health or HealthBook()
        self.rng = rng or random.Random()
        self.ready = ready or (lambda _rid: True)
        self.queue_depth = queue_depth or (lambda _rid: None)
        self.prefixes = PrefixTable(self.config.prefix_entries)
        self._rr = itertools.count()
        self._topology = topology
        self.failovers: dict[str, int] = {}  # by model: attempts moved to another replica
        # Told of each attempt as it starts (the batch runner yields to online traffic).
        self.on_begin: list[Callable[[Placement], None]] = []

    @property
    def topology(self) -> Topology:
        return self._topology

    def set_topology(self, topology: Topology) -> None:
        """Swap in a new topology; state of removed replicas is dropped."""
        old = {r.id for _, r in self._topology.replicas()}
        self._topology = topology
        kept = {r.id for _, r in topology.replicas()}
        for rid in old - kept:
            self.prefixes.forget(rid)
        self.health.forget(kept | {rid for rid, h in self.health.replicas.items() if h.in_flight})

    # --- residency ---------------------------------------------------------------------------

    def allowed_deployments(self, model: str, hints: RoutingHints) -> list[Deployment]:
        """The model's deployments the caller may use.

        Raises:
            ModelNotFoundError: the model is deployed nowhere.
            PermissionDeniedError: the requested region, or every region with the model, is
                outside the caller's allowed regions (``region_not_allowed``).
            InvalidRequestError: the requested region does not exist (``unknown_region``).
        """
        t = self._topology
        deployments = t.deployments_of(model)
        if not deployments:
            raise ModelNotFoundError(f"The model '{model}' is not deployed.", param="model")
        allowed = hints.allowed_regions
        wanted = hints.preferred_region
        if wanted is not None:
            refused = PermissionDeniedError(
                f"This API key may not use the region '{wanted}' ({REGION_HEADER}).",
                code="region_not_allowed",
            )
            if allowed is not None and wanted not in allowed:
                raise refused
            region = t.region(wanted)
            if region is None:
                raise InvalidRequestError(
                    f"There is no region '{wanted}' ({REGION_HEADER}).", code="unknown_region"
                )
            if not hints.allows(wanted, region.jurisdiction):
                raise refused
        usable = [d for d in deployments if hints.allows(d.region, self._jurisdiction(d.region))]
        if not usable:
            raise PermissionDeniedError(
                f"The model '{model}' is not deployed in any region this API key may use.",
                param="model",
                code="region_not_allowed",
            )
        return usable

    def _jurisdiction(self, region_id: str) -> str:
        region = self._topology.region(region_id)
        return region.jurisdiction if region is not None else ""

    # --- choice ------------------------------------------------------------------------------

    def snapshot(self, deployment: Deployment, replica: Replica) -> ReplicaSnapshot:
        h = self.health.of(replica.id)
        region = self._topology.region(deployment.region)
        reported = self.queue_depth(replica.id)
        return ReplicaSnapshot(
            replica_id=replica.id,
            region=deployment.region,
            available=bool(region and region.enabled)
            and self.ready(replica.id)
            and h.breaker.allows(),
            in_flight=h.in_flight + _reserved(h),
            queue_depth=h.queue_depth if reported is None else reported,
            max_concurrency=replica.max_concurrency,
            cached_prefixes=self.prefixes.owned(replica.id),
        )

    def region_latency_ms(self, region: str) -> float | None:
        t = self._topology
        configured = t.latency(t.gateway_region, region)
        if self.config.latency != "measured":
            return configured
        rtts = [
            h.rtt_ms
            for d in t.deployments
            if d.region == region
            for r in d.replicas
            if (h := self.health.replicas.get(r.id)) is not None and h.rtt_ms is not None
        ]
        return min(rtts) if rtts else configured

    def pick(
        self,
        model: str,
        hints: RoutingHints,
        blocks: Sequence[int] = (),
        exclude: Collection[str] = (),
    ) -> Placement:
        """Where to send the next attempt of a request (see the module docstring).

        Args:
            model: Served model id.
            hints: The caller's residency and preferences.
            blocks: The prompt's prefix fingerprint (``prefix.fingerprint``).
            exclude: Replica ids already tried for this request, once per attempt (a pool,
                ``Replica.attempts`` > 1, stays a candidate until tried that many times).

        Raises:
            ModelNotFoundError, PermissionDeniedError, InvalidRequestError: see
                ``allowed_deployments``.
            ServiceUnavailableError: no allowed replica is available now.
        """
        usable = self.allowed_deployments(model, hints)
        by_region: dict[str, list[ReplicaSnapshot]] = {}
        for d in usable:
            snaps = [self.snapshot(d, r) for r in d.replicas if not _spent(r, exclude)]
            by_region[d.region] = [s for s in snaps if s.available]
        regions = [
            RegionSnapshot(
                region=region,
                latency_ms=self.region_latency_ms(region),
                available=len(snaps),
                saturated=bool(snaps) and all(s.saturated for s in snaps),
            )
            for region, snaps in by_region.items()
        ]
        ranked = policies.rank_regions(
            regions, preferred=hints.preferred_region, home=hints.home_region
        )
        if not ranked:
            trial = self._trial(usable, exclude)
            if trial is None:
                raise self._unavailable(model, usable, exclude)
            return Placement(model, trial[0], trial[1])
        region = ranked[0]
        owners, matched = self.prefixes.owners(blocks) if blocks else ((), 0)
        affinity = hints.affinity_replica
        if affinity is not None:
            # The conversation's previous turn ran there: its cache holds the whole earlier
            # conversation, a longer prefix than the table (bounded by max_prefix_chars) sees.
            owners = (affinity, *(o for o in owners if o != affinity))
            home = next(
                (r for r in ranked if affinity in {s.replica_id for s in by_region[r]}), None
            )
            if home is not None and hints.preferred_region is None:
                region = home
        candidates = by_region[region]
        ctx = policies.PolicyContext(owners, self.rng, next(self._rr), self.config.max_imbalance)
        chosen = self._policy(candidates, ctx)
        hit = matched if chosen.replica_id in owners else 0
        return Placement(model, region, chosen.replica_id, hit)

    def _trial(self, usable: list[Deployment], exclude: Collection[str]) -> tuple[str, str] | None:
        """(region, replica) for a trial through an open breaker, when every allowed replica
        is held back by its breaker alone: the one whose cool-down ends first. ``None`` when
        no replica is ready in an enabled region, or each one has a trial running."""
        held: list[tuple[float, str, str]] = []
        for d in usable:
            region = self._topology.region(d.region)
            if region is None or not region.enabled:
                continue
            for r in d.replicas:
                if _spent(r, exclude) or not self.ready(r.id):
                    continue
                breaker = self.health.of(r.id).breaker
                if not breaker.trial_in_flight:
                    held.append((breaker.retry_in_s(), d.region, r.id))
        for _, region_id, replica_id in sorted(held):
            if self.health.of(replica_id).breaker.force_trial():
                return region_id, replica_id
        return None

    def _unavailable(
        self, model: str, usable: list[Deployment], exclude: Collection[str]
    ) -> ServiceUnavailableError:
        waits = [
            self.health.of(r.id).breaker.retry_in_s()
            for d in usable
            for r in d.replicas
            if not _spent(r, exclude)
        ]
        waits = [w for w in waits if w > 0]
        return ServiceUnavailableError(
            f"No replica of the model '{model}' is available in the regions this API key "
            "may use; try again later.",
            retry_after_s=min(waits) if waits else 1.0,
            code="no_healthy_replica",
        )

    # --- bookkeeping -------------------------------------------------------------------------

    def reserve(self, placement: Placement) -> None:
        """A request was placed at ``placement`` and will be sent there (``begin``) once
        admitted: it counts as in flight there from now, so requests placed in the same few
        milliseconds see it and spread, for at most ``RESERVATION_S`` (a request refused
        between its placement and its send, e.g. by a rate limit, leaves it to expire)."""
        self.health.of(placement.replica_id).reserved.append(time.monotonic() + RESERVATION_S)

    def begin(self, placement: Placement) -> None:
        """An attempt is being sent to ``placement`` (taking the place of one of its
        reservations, if it holds any)."""
        h = self.health.of(placement.replica_id)
        if h.reserved:
            h.reserved.popleft()
        h.in_flight += 1
        h.breaker.on_send()
        for listener in self.on_begin:
            listener(placement)

    def end(self, placement: Placement, outcome: Outcome, reason: str = "") -> None:
        """The attempt at ``placement`` ended."""
        h = self.health.of(placement.replica_id)
        h.in_flight = max(0, h.in_flight - 1)
        if outcome is Outcome.SUCCESS:
            self.health.success(placement.replica_id)
        elif outcome is Outcome.FAILURE:
            self.health.failure(placement.replica_id, reason or "request failed")
        else:
            h.abandoned += 1
            h.breaker.on_abandon()

    def failed_over(self, model: str) -> None:
        """A request of ``model`` moves to another replica after a failed attempt."""
        self.failovers[model] = self.failovers.get(model, 0) + 1

    def fail_over(
        self,
        model: str,
        failure: Exception,
        tried: tuple[str, ...],
        pick: Callable[[tuple[str, ...]], T],
    ) -> T:
        """The next attempt of a request of ``model`` whose attempt failed retryably before
        answering: ``pick(tried)`` (``tried``: the replicas tried so far, the failed one
        included), counted as a failover.

        Raises:
            failure: ``max_attempts`` replicas were tried, or it is a replica's 429 (with its
                ``Retry-After``) that no other replica can take.
            ServiceUnavailableError: no other allowed replica is available (from ``failure``).
        """
        if len(tried) >= self.config.max_attempts:
            raise failure
        try:
            chosen = pick(tried)
        except ServiceUnavailableError as unavailable:
            if isinstance(failure, RateLimitError):
                raise failure from None
            raise unavailable from failure
        self.failed_over(model)
        return chosen

    def served(self, placement: Placement, blocks: Sequence[int]) -> None:
        """``placement``'s replica has started answering a prompt with these blocks."""
        if blocks:
            self.prefixes.record(blocks, placement.replica_id)


__all__ = [
    "REGION_HEADER",
    "Outcome",
    "Placement",
    "Router",
    "is_replica_failure",
    "retryable",
    "verdict",
]
