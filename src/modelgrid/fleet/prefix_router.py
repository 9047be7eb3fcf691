"""``PrefixAffinityRouter``: Ray Serve's request router by the gateway's prefix fingerprint.

The gateway computes each prompt's prefix fingerprint (``routing.prefix.fingerprint``:
chained hashes of 256-character blocks) and, for a replica whose topology entry names a
``prefix_header``, sends it as hex hashes joined by ``.``. Serve's proxy reads the header
``x-session-id`` (``spec.SESSION_HEADER``; Ray's ``RAY_SERVE_SESSION_ID_HEADER_KEY``) into
the request's ``session_id``, which this router reads.

The rule is the gateway's own ``cache_aware`` policy, applied to the Serve replicas: the
replica that most recently served the longest matching prefix (a ``routing.prefix.
PrefixTable`` of Serve replica ids), unless its load is more than ``max_imbalance`` above
the least loaded replica's; otherwise power of two choices. That replica's llama.cpp KV cache
most likely still holds the prompt's prefix. A replica's load is its queue (Serve's cached
queue lengths) plus the requests this router holds for it: with a llama.cpp replica's one
slot (``max_ongoing_requests`` 1) a busy owner refuses the request, and Serve's machinery
asks again after a back-off, so the request waits for the owner while at most
``max_imbalance`` requests are ahead of it there, rather than landing on a replica whose
cache holds another prompt. No ``FIFOMixin``: a replica found for a request goes to that
request, not to the oldest one waiting (which may have another prefix). It follows Serve's pluggable request-router
interface (``ray.serve.request_router``, alpha in Ray 2.60:
https://docs.ray.io/en/latest/serve/advanced-guides/custom-request-router.html).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from ray.serve.request_router import (
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

from modelgrid.routing.prefix import PrefixTable

MAX_FINGERPRINT_BLOCKS = 64
HELD_FOR_S = 60.0  # a request held for its owner longer than this is forgotten (cancelled)


def parse_fingerprint(value: str | None) -> tuple[int, ...]:
    """The block hashes of a fingerprint header (``"1a2b.3c4d"``); ``()`` for none or a
    malformed one (routing by load then)."""
    if not value:
        return ()
    parts = value.split(".")
    if len(parts) > MAX_FINGERPRINT_BLOCKS:
        return ()
    try:
        return tuple(int(p, 16) for p in parts)
    except ValueError:
        return ()


def choose(
    candidates: list[str],
    owners: tuple[str, ...],
    queue: dict[str, int],
    max_imbalance: int,
    rng: random.Random,
) -> list[list[str]]:
    """The ranks of replica ids to try (pure: the policy, apart from Serve's types): the
    owner alone (the request waits for it), or two random candidates.

    Args:
        candidates: Replica ids Serve may route to now.
        owners: Replicas that served the prompt's longest known prefix, most recent first.
        queue: Known loads (a replica missing counts as 0).
        max_imbalance: How much more the owner's load may be than the least.
        rng: For power of two choices.
    """
    if not candidates:
        return []
    least = min(queue.get(c, 0) for c in candidates)
    for owner in owners:
        if owner in candidates and queue.get(owner, 0) - least <= max_imbalance:
            return [[owner]]
    if len(candidates) <= 2:
        return [rng.sample(candidates, len(candidates))]
    return [rng.sample(candidates, 2)]


class PrefixAffinityRouter(RequestRouter):
    """See the module docstring. ``initialize_state`` takes ``max_imbalance`` (requests,
    default 2) and ``max_entries`` (block hashes remembered, default 65536) from the
    deployment's ``request_router_kwargs``."""

    def initialize_state(self, max_imbalance: int = 2, max_entries: int = 65536, **_: Any) -> None:
        self._max_imbalance = max_imbalance
        self._table = PrefixTable(max_entries)
        self._rng = random.Random()
        self._held: dict[str, tuple[str, float]] = {}  # request id -> (owner, since)

    def _state(self) -> None:
        if not hasattr(self, "_table"):  # Serve calls initialize_state; a test may not
            self.initialize_state()

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        self._state()
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        blocks = parse_fingerprint(pending_request.metadata.session_id if pending_request else "")
        owners = self._table.owners(blocks)[0] if blocks else ()
        cache = self.replica_queue_len_cache
        request_id = pending_request.metadata.internal_request_id if pending_request else ""
        now = time.monotonic()
        for rid, (_, since) in list(self._held.items()):
            if now - since > HELD_FOR_S:
                del self._held[rid]
        load = Counter(owner for rid, (owner, _) in self._held.items() if rid != request_id)
        for rid, r in by_id.items():
            load[rid] += cache.get(r.replica_id) or 0
        ranks = choose(list(by_id), owners, dict(load), self._max_imbalance, self._rng)
        if request_id and len(ranks) == 1 and len(ranks[0]) == 1 and ranks[0][0] in owners:
            since = self._held.get(request_id, ("", now))[1]
            self._held[request_id] = (ranks[0][0], since)
        else:
            self._held.pop(request_id, None)
        return [[by_id[rid] for rid in rank] for rank in ranks]

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any
    ) -> None:
        self._state()
        self._held.pop(pending_request.metadata.internal_request_id, None)
        blocks = parse_fingerprint(pending_request.metadata.session_id)
        if blocks:
            self._table.record(blocks, replica_id.unique_id)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._state()
        self._table.forget(replica_id.unique_id)


__all__ = ["PrefixAffinityRouter", "choose", "parse_fingerprint"]
