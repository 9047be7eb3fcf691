"""A profile re-centred on the fleet's own traffic: the engine's speed over the profile's
fit read from the requests the usage ledger holds (``tenancy.timings``), without an idle
fleet or a single probe request.

``modelgrid plan calibrate`` measures a fleet at rest; the engine's speed moves after that
(other jobs on the machine, thermal limits, a new build), and a prediction made with the
old speed inherits the difference, multiplied by ~1/(1 - utilisation) in the queue's waits.
The ledger has, for every request, when it arrived, its times to the first and the last
output token, its uncached prompt and output tokens and the replica that served it: what
``calibration.speed_in_run`` reads (decode from every request's time per output token,
prefill from the requests that found their replica idle, each with ``host_slowdown`` taken
off while other replicas of its machine were busy). Which replicas share a machine is the
simulator's own packing (``sim``): a deployment's replicas in the topology's order,
``replicas_per_host`` to a machine.

The ledger's times are the gateway's: from its receipt of the request to its receipt of the
first and the last token from the replica, where ``calibrate``'s are the client's (send to
the first and the last content chunk). The first token reaches a client on the same machine
~4 ms after the gateway has it (validation run 21: medians 3.3-3.8 ms a level), so prefill
reads ~4 ms short, 0.4 % of a 900 ms TTFT. The request's end (``total_ms``) is no measure of
decode: llama-cpp-python evaluates the last token before it stops, a step (~30 ms) after
the client has it, which read as decode 8 % slower than the client saw (run 21).
"""

from __future__ import annotations

from collections.abc import Sequence

from modelgrid.core.errors import PlanInputError
from modelgrid.planner.calibration import Sample, Speed, at_speed, speed_in_run
from modelgrid.planner.profile import EngineProfile
from modelgrid.routing.topology import Topology
from modelgrid.tenancy.timings import Served

MIN_REQUESTS = 20
"""Fewest requests of two tokens or more (decode) for a speed: the median of 20 moves
~2 % with the spread of ``calibrate``'s idle requests (0.92-1.13)."""


def samples(served: Sequence[Served]) -> list[Sample]:
    """The ledger's requests as ``Sample``s on one clock (seconds since the first
    arrival)."""
    if not served:
        return []
    t0 = served[0].arrived_at
    out = []
    for s in served:
        sent = (s.arrived_at - t0).total_seconds()
        first, last = sent + s.ttft_ms / 1000, sent + s.last_token_ms / 1000
        out.append(Sample(sent, first, last, s.prompt_tokens, s.output_tokens, s.replica))
    return out


def machines(
    topology: Topology, model: str, replicas_per_host: int, requests: Sequence[Sample]
) -> list[list[Sample]]:
    """``requests`` grouped by the machine their replica shares with others: each
    deployment of ``model``'s replicas in order, ``replicas_per_host`` to a machine (as
    ``sim`` packs them); a replica the topology does not name is a machine of its own."""
    machine_of: dict[str, str] = {}
    for d in topology.deployments:
        if d.model == model:
            for k, r in enumerate(d.replicas):
                machine_of[r.id] = f"{d.region}#{k // replicas_per_host}"
    groups: dict[str, list[Sample]] = {}
    for s in requests:
        groups.setdefault(machine_of.get(s.replica, f"replica:{s.replica}"), []).append(s)
    return list(groups.values())


def recalibrate(
    profile: EngineProfile, served: Sequence[Served], topology: Topology, *, window: str = ""
) -> tuple[EngineProfile, Speed]:
    """``profile`` with its prefill and decode spreads re-centred on the speed of
    ``served`` (``calibration.at_speed``), and that speed.

    ``window`` (e.g. ``from … to …``) names the requests' window in the error.

    Raises:
        PlanInputError: fewer than ``MIN_REQUESTS`` requests of two tokens or more, or not
            one that found its replica idle (no prefill to read).
    """
    groups = machines(topology, profile.model, profile.replicas_per_host, samples(served))
    speed = speed_in_run(profile, *groups) if groups else Speed(None, None, 0, 0)
    if speed.decode_requests < MIN_REQUESTS or speed.prefill is None:
        raise PlanInputError(
            f"the ledger holds {len(served)} served requests of {profile.model} "
            f"{window or 'in the window'}, "
            f"{speed.decode_requests} of two tokens or more and {speed.prefill_requests} that "
            f"found their replica idle: at least {MIN_REQUESTS} and 1 are needed",
            param="--since",
        )
    return at_speed(profile, speed), speed


__all__ = ["MIN_REQUESTS", "machines", "recalibrate", "samples"]
