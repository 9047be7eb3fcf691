"""Where models run: regions, deployments (a model in a region) and their replicas.

All three are frozen dataclasses; a ``Topology`` is an immutable snapshot, changed by building
a new one (``with_region``, ``with_deployment``, …) and swapping it in the router, so a request
always sees one consistent picture. The embedded default is one region, ``local``, holding
the in-process models (``default_topology``): nothing to configure.

A topology file (TOML, ``MODELGRID_TOPOLOGY_FILE``) looks like::

    gateway_region = "ap-southeast-1"     # where this gateway runs (the latency origin)

    [[regions]]
    id = "ap-southeast-1"
    name = "Singapore"
    jurisdiction = "SG"                   # ISO 3166 country (or a bloc such as "EU")
    lat = 1.29
    lon = 103.85

    [latency_ms]                          # expected RTT between regions, either direction
    "ap-southeast-1" = { "eu-west-1" = 160.0, "us-east-1" = 220.0 }

    [[deployments]]
    model = "qwen2.5-coder-0.5b-instruct"
    region = "ap-southeast-1"
    [[deployments.replicas]]
    kind = "upstream"                     # an OpenAI-compatible server (`modelgrid engine`)
    base_url = "http://10.0.0.5:9001/v1"
    max_concurrency = 4                   # in flight before the replica counts as saturated
    [[deployments.replicas]]
    kind = "local"                        # the gateway's in-process engine for this model

The file's schema is ``protocol.topology.TopologyFile`` (the admin API's bodies use the same
models): ``loads`` validates the TOML with it, and every ``Topology``, however built, is
checked against it and then against the rules across objects (``_validate``). A problem is
one ``TopologyError`` line naming the field (``regions[1].jurisdiction: …``). ``dumps``
writes the same format back with ``tomli_w`` (the admin API persists its changes with it).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args

import tomli_w
from pydantic import ValidationError

from modelgrid.core.errors import TopologyError
from modelgrid.core.files import write_text_atomic
from modelgrid.core.validation import first_problem
from modelgrid.protocol.topology import (
    DeploymentSpec,
    RegionSpec,
    ReplicaKind,
    ReplicaSpec,
    TopologyFile,
)

LOCAL_REGION = "local"
KINDS: tuple[str, ...] = get_args(ReplicaKind)


@dataclass(frozen=True, slots=True)
class Region:
    """A place models run.

    Attributes:
        id: Stable id, lowercase letters, digits and dashes (``ap-southeast-1``).
        name: Display name (``Singapore``).
        jurisdiction: Country or bloc whose law applies (``SG``, ``DE``, ``EU``); may be empty.
        lat / lon: Location in degrees (for the distance-based latency fallback).
        enabled: ``False`` drains the region: no new request goes there.
    """

    id: str
    name: str = ""
    jurisdiction: str = ""
    lat: float | None = None
    lon: float | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Replica:
    """One endpoint serving a deployment.

    Attributes:
        id: Unique in the topology (default ``<region>/<model>/<n>``).
        kind: ``local`` (this process's engine for the model) or ``upstream`` (an
            OpenAI-compatible server, e.g. a ``modelgrid engine`` worker, at ``base_url``).
        base_url: The upstream's API root, ending in ``/v1`` (upstream only).
        upstream_model: The model's name at the upstream (default: the deployment's model).
        health_url: What probes GET (default: the server's ``/health/ready``, which
            ``modelgrid engine`` workers answer with their queue depth; where that is a 404,
            the upstream engine's own probe, ``GET {base_url}/models`` then ``/health``).
        max_concurrency: Requests in flight at which the replica counts as saturated
            (``None``: never).
        attempts: Attempts one request may make here (failures before the first byte).
            More than 1 makes it a **pool**: an endpoint balancing over engines of its own (a
            Ray Serve application), where the next attempt lands on another of them. A
            pool's breaker counts only failures to reach it (connection, probes), not the
            failures of its members that it answers for (a 5xx, a cut stream): the pool
            replaces those itself (``docs/fleet.md``).
        prefix_header: Send the prompt's prefix fingerprint (``routing.prefix``: block
            hashes in hex, joined by ``.``) in this request header, for a pool that routes
            by it (Ray Serve: ``x-session-id``).
    """

    id: str
    kind: ReplicaKind = "upstream"
    base_url: str | None = None
    upstream_model: str | None = None
    health_url: str | None = None
    max_concurrency: int | None = None
    attempts: int = 1
    prefix_header: str | None = None

    @property
    def pool(self) -> bool:
        """An endpoint balancing over a pool of engines (``attempts`` > 1)."""
        return self.attempts > 1


@dataclass(frozen=True, slots=True)
class Deployment:
    """A model served in a region by one or more replicas."""

    model: str
    region: str
    replicas: tuple[Replica, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.region)


@dataclass(frozen=True, slots=True)
class Topology:
    """An immutable, validated picture of regions and deployments.

    Attributes:
        regions: Known regions (ids unique).
        deployments: At most one per (model, region); replica ids unique overall; at most one
            ``local`` replica per model (a process has one engine per model).
        gateway_region: Where this gateway runs: the origin of latency estimates.
        latency_ms: Expected RTT between two regions, keyed by the sorted pair of ids.
    """

    regions: tuple[Region, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    gateway_region: str = LOCAL_REGION
    latency_ms: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # Lookups by id, built once (every request asks several): not part of the value.
    _regions: dict[str, Region] = field(init=False, repr=False, compare=False)
    _replicas: dict[str, tuple[Deployment, Replica]] = field(init=False, repr=False, compare=False)
    _by_model: dict[str, list[Deployment]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate(self)
        by_model: dict[str, list[Deployment]] = {}
        for d in self.deployments:
            by_model.setdefault(d.model, []).append(d)
        object.__setattr__(self, "_regions", {r.id: r for r in self.regions})
        object.__setattr__(
            self, "_replicas", {r.id: (d, r) for d in self.deployments for r in d.replicas}
        )
        object.__setattr__(self, "_by_model", by_model)

    # --- queries ------------------------------------------------------------------------

    def region(self, region_id: str) -> Region | None:
        return self._regions.get(region_id)

    def replica(self, replica_id: str) -> tuple[Deployment, Replica] | None:
        """The replica with this id and its deployment, if any."""
        return self._replicas.get(replica_id)

    def region_ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.regions)

    def models(self) -> list[str]:
        """Model ids with at least one deployment, in first-seen order."""
        return list(dict.fromkeys(d.model for d in self.deployments))

    def deployments_of(self, model: str) -> list[Deployment]:
        return list(self._by_model.get(model, ()))

    def deployment(self, model: str, region: str) -> Deployment | None:
        return next((d for d in self.deployments if d.key == (model, region)), None)

    def replicas(self) -> Iterator[tuple[Deployment, Replica]]:
        for d in self.deployments:
            for r in d.replicas:
                yield d, r

    def latency(self, a: str, b: str) -> float | None:
        """Expected RTT in ms between regions ``a`` and ``b``: 0 for the same region, the
        configured figure if any, else an estimate from the great-circle distance (light in
        fibre, ~100 km per ms of RTT, plus 5 ms), else ``None``."""
        if a == b:
            return 0.0
        configured = self.latency_ms.get(_pair(a, b))
        if configured is not None:
            return configured
        ra, rb = self.region(a), self.region(b)
        if ra is None or rb is None or None in (ra.lat, ra.lon, rb.lat, rb.lon):
            return None
        return 5.0 + _distance_km(ra, rb) / 100.0

    # --- changes (each returns a new, validated topology) --------------------------------

    def with_region(self, region: Region) -> Topology:
        """Add ``region`` or replace the one with its id."""
        others = tuple(r for r in self.regions if r.id != region.id)
        if len(others) == len(self.regions):
            return replace(self, regions=(*self.regions, region))
        return replace(
            self, regions=tuple(region if r.id == region.id else r for r in self.regions)
        )

    def without_region(self, region_id: str) -> Topology:
        """Remove a region that has no deployments.

        Raises:
            TopologyError: it still has deployments.
        """
        if any(d.region == region_id for d in self.deployments):
            raise TopologyError(f"region {region_id!r} still has deployments")
        latency = {k: v for k, v in self.latency_ms.items() if region_id not in k}
        regions = tuple(r for r in self.regions if r.id != region_id)
        return replace(self, regions=regions, latency_ms=latency)

    def with_deployment(self, deployment: Deployment) -> Topology:
        """Add ``deployment`` or replace the one for its (model, region)."""
        deployment = _name_replicas(deployment)
        kept = tuple(d for d in self.deployments if d.key != deployment.key)
        if len(kept) == len(self.deployments):
            return replace(self, deployments=(*self.deployments, deployment))
        return replace(
            self,
            deployments=tuple(
                deployment if d.key == deployment.key else d for d in self.deployments
            ),
        )

    def without_deployment(self, model: str, region: str) -> Topology:
        return replace(
            self, deployments=tuple(d for d in self.deployments if d.key != (model, region))
        )


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _distance_km(a: Region, b: Region) -> float:
    assert a.lat is not None and a.lon is not None and b.lat is not None and b.lon is not None
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def _validate(t: Topology) -> None:
    """``t`` against the one schema (``TopologyFile``: each field and object), then the rules
    across objects.

    Raises:
        TopologyError: the first problem, one line naming its field.
    """
    try:
        checked = TopologyFile.model_validate(_document(t), strict=True)
    except ValidationError as exc:
        raise TopologyError(_problem(exc)) from None
    for i, (r, spec) in enumerate(zip(t.regions, checked.regions, strict=True)):
        if r.jurisdiction != spec.jurisdiction:  # built in code: must already be a code
            raise TopologyError(
                f"regions[{i}].jurisdiction: {r.jurisdiction!r} is not a code as stored "
                f"(write {spec.jurisdiction!r})"
            )
    _validate_across(t)


def _validate_across(t: Topology) -> None:
    """The rules no single object can check: unique ids, deployments and latency in known
    regions, one deployment per (model, region), the ``local`` replicas."""
    known: set[str] = set()
    for i, r in enumerate(t.regions):
        if r.id in known:
            raise TopologyError(f"regions[{i}].id: region id {r.id!r} is used twice")
        known.add(r.id)
    if t.regions and t.gateway_region not in known:
        raise TopologyError(f"gateway_region: {t.gateway_region!r} is not a region")
    seen_keys: set[tuple[str, str]] = set()
    replica_ids: set[str] = set()
    local_models: set[str] = set()
    for i, d in enumerate(t.deployments):
        where = f"deployments[{i}]"
        if d.region not in known:
            raise TopologyError(f"{where}.region: unknown region {d.region!r} ({d.model})")
        if d.key in seen_keys:
            raise TopologyError(f"{where}: two deployments of {d.model} in {d.region}")
        seen_keys.add(d.key)
        for j, rep in enumerate(d.replicas):
            if rep.id in replica_ids:
                raise TopologyError(f"{where}.replicas[{j}].id: {rep.id!r} is used twice")
            replica_ids.add(rep.id)
            if rep.kind != "local":
                continue
            if d.model in local_models:
                raise TopologyError(
                    f"{where}.replicas[{j}].kind: at most one local replica per model ({d.model})"
                )
            if t.regions and d.region != t.gateway_region:
                # Residency: the gateway's own engine runs where the gateway runs; labelled
                # with another region, requests would run somewhere other than they say.
                raise TopologyError(
                    f"{where}.replicas[{j}].kind: {d.model} in {d.region}: a local replica "
                    f"runs in this gateway's region ({t.gateway_region}); use an upstream "
                    "replica there"
                )
            local_models.add(d.model)
    for a, b in t.latency_ms:
        if (a, b) != _pair(a, b):
            raise TopologyError("latency_ms: keys must be sorted pairs (use parse_latency)")
        for end in (a, b):
            if end not in known:
                raise TopologyError(f"latency_ms.{a}.{b}: unknown region {end!r}")


def _problem(exc: ValidationError) -> str:
    """The first error of ``exc`` as one line: ``regions[1].jurisdiction: <why> (got …)``."""
    path, why = first_problem(exc)
    return f"{path or 'topology'}: {why}"


def _name_replicas(d: Deployment) -> Deployment:
    """Give replicas without an id the default ``<region>/<model>/<n>``."""
    if all(r.id for r in d.replicas):
        return d
    named = tuple(
        r if r.id else replace(r, id=f"{d.region}/{d.model}/{i}") for i, r in enumerate(d.replicas)
    )
    return replace(d, replicas=named)


def parse_latency(table: Mapping[str, Mapping[str, float]]) -> dict[tuple[str, str], float]:
    """``{"a": {"b": 12}}`` → ``{("a", "b"): 12.0}`` (pairs sorted; either direction given).

    Raises:
        TopologyError: the two directions of a pair disagree.
    """
    out: dict[tuple[str, str], float] = {}
    for a, row in table.items():
        for b, ms in row.items():
            key = _pair(a, b)
            if key in out and out[key] != float(ms):
                raise TopologyError(f"latency {a}-{b} given twice with different values")
            out[key] = float(ms)
    return out


# --- construction ----------------------------------------------------------------------------


def default_topology(models: Iterable[str] = ()) -> Topology:
    """The embedded default: region ``local`` with one in-process replica per model."""
    return with_local_models(
        Topology(regions=(Region(LOCAL_REGION, "Local (this server)"),)), models
    )


def with_local_models(topology: Topology, models: Iterable[str]) -> Topology:
    """``topology`` plus, for each of ``models`` deployed nowhere in it, a deployment in the
    gateway's region with the in-process replica (so a model the process loads is served
    without configuration); the gateway's region is added if missing."""
    missing = [m for m in models if not topology.deployments_of(m)]
    if not missing:
        return topology
    t = topology
    if t.region(t.gateway_region) is None:
        name = "Local (this server)" if t.gateway_region == LOCAL_REGION else ""
        t = t.with_region(Region(t.gateway_region, name))
    for m in missing:
        t = t.with_deployment(
            Deployment(m, t.gateway_region, (Replica(f"{t.gateway_region}/{m}/local", "local"),))
        )
    return t


def from_dict(data: Mapping[str, Any]) -> Topology:
    """A topology from the parsed TOML (see the module docstring).

    Raises:
        TopologyError: unknown keys, wrong types, or an inconsistent topology.
    """
    try:
        spec = TopologyFile.model_validate(data, strict=True)
    except ValidationError as exc:
        raise TopologyError(_problem(exc)) from None
    return from_spec(spec)


def from_spec(spec: TopologyFile) -> Topology:
    """The topology a validated file describes (replicas without an id named
    ``<region>/<model>/<n>``; ``gateway_region`` by default the first region).

    Raises:
        TopologyError: an inconsistent topology (unknown region, an id used twice, …).
    """
    regions = tuple(region_of(r) for r in spec.regions)
    deployments = tuple(_name_replicas(deployment_of(d)) for d in spec.deployments)
    latency = parse_latency(spec.latency_ms)
    gateway = spec.gateway_region or (regions[0].id if regions else LOCAL_REGION)
    return Topology(regions, deployments, gateway, latency)


def region_of(spec: RegionSpec) -> Region:
    """The region a validated ``RegionSpec`` (or ``RegionCreate``) describes."""
    return Region(spec.id, spec.name, spec.jurisdiction, spec.lat, spec.lon, spec.enabled)


def replica_of(spec: ReplicaSpec) -> Replica:
    """The replica a validated ``ReplicaSpec`` describes (no id yet: ``""``)."""
    return Replica(
        spec.id or "",
        spec.kind,
        spec.base_url,
        spec.upstream_model,
        spec.health_url,
        spec.max_concurrency,
        spec.attempts,
        spec.prefix_header,
    )


def deployment_of(spec: DeploymentSpec) -> Deployment:
    """The deployment a validated ``DeploymentSpec`` describes (replicas not yet named:
    ``Topology.with_deployment`` names them)."""
    return Deployment(spec.model, spec.region, tuple(replica_of(r) for r in spec.replicas))


def loads(text: str) -> Topology:
    """Parse a topology from TOML text.

    Raises:
        TopologyError: invalid TOML or topology.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"invalid TOML: {exc}") from None
    return from_dict(data)


def load(path: Path) -> Topology:
    """Read a topology file.

    Raises:
        TopologyError: invalid file (not UTF-8 included); OSError: unreadable.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TopologyError(f"not UTF-8 text (byte {exc.start})") from None
    return loads(text)


# --- writing ---------------------------------------------------------------------------------


_HEADER = "# modelgrid topology (the admin API rewrites this file; comments are not kept)\n"


def _table(obj: Region | Replica, keep: tuple[str, ...]) -> dict[str, Any]:
    """``obj``'s fields as a TOML table: ``None`` and defaults left out, except ``keep``."""
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if v is not None and (f.name in keep or v != f.default):
            out[f.name] = v
    return out


def _document(t: Topology) -> dict[str, Any]:
    """``t`` in the file's shape (``TopologyFile``): what ``dumps`` writes and what every
    ``Topology`` is validated as."""
    doc: dict[str, Any] = {"gateway_region": t.gateway_region}
    if t.regions:
        doc["regions"] = [_table(r, ("id",)) for r in t.regions]
    if t.latency_ms:
        rows: dict[str, dict[str, float]] = {}
        for (a, b), ms in sorted(t.latency_ms.items()):
            rows.setdefault(a, {})[b] = float(ms)
        doc["latency_ms"] = rows
    if t.deployments:
        doc["deployments"] = [
            {
                "model": d.model,
                "region": d.region,
                "replicas": [_table(r, ("id", "kind")) for r in d.replicas],
            }
            for d in t.deployments
        ]
    return doc


def dumps(t: Topology) -> str:
    """The topology as TOML that ``loads`` reads back to an equal ``Topology``."""
    return _HEADER + tomli_w.dumps(_document(t))


def save(t: Topology, path: Path) -> None:
    """Write ``t`` to ``path`` atomically (``core.files.write_text_atomic``: a link
    followed, a path that is not a regular file refused with ``OSError``)."""
    write_text_atomic(path, dumps(t))


__all__ = [
    "KINDS",
    "LOCAL_REGION",
    "Deployment",
    "Region",
    "Replica",
    "ReplicaKind",
    "Topology",
    "TopologyError",
    "default_topology",
    "deployment_of",
    "dumps",
    "from_dict",
    "from_spec",
    "load",
    "loads",
    "parse_latency",
    "region_of",
    "replica_of",
    "save",
    "with_local_models",
]
