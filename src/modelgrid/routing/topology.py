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

``dumps`` writes the same format back (the admin API persists its changes with it).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from modelgrid.core.errors import TopologyError
from modelgrid.core.types import jurisdiction_code

LOCAL_REGION = "local"
ReplicaKind = Literal["local", "upstream"]
KINDS: tuple[str, ...] = ("local", "upstream")

_REGION_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_REPLICA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")


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
    """

    id: str
    kind: ReplicaKind = "upstream"
    base_url: str | None = None
    upstream_model: str | None = None
    health_url: str | None = None
    max_concurrency: int | None = None


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


def _is_code(value: str) -> bool:
    try:
        return jurisdiction_code(value) == value
    except ValueError:
        return False


def _validate(t: Topology) -> None:
    ids = [r.id for r in t.regions]
    if len(set(ids)) != len(ids):
        raise TopologyError("region ids must be unique")
    for r in t.regions:
        if not _REGION_ID.match(r.id):
            raise TopologyError(f"bad region id {r.id!r} (lowercase letters, digits, dashes)")
        if r.lat is not None and not -90 <= r.lat <= 90:
            raise TopologyError(f"region {r.id}: lat out of range")
        if r.lon is not None and not -180 <= r.lon <= 180:
            raise TopologyError(f"region {r.id}: lon out of range")
        if r.jurisdiction and not _is_code(r.jurisdiction):
            raise TopologyError(f"region {r.id}: bad jurisdiction {r.jurisdiction!r}")
    known = set(ids)
    seen_keys: set[tuple[str, str]] = set()
    replica_ids: set[str] = set()
    local_models: set[str] = set()
    for d in t.deployments:
        if not d.model:
            raise TopologyError("a deployment needs a model")
        if d.region not in known:
            raise TopologyError(f"deployment of {d.model}: unknown region {d.region!r}")
        if d.key in seen_keys:
            raise TopologyError(f"two deployments of {d.model} in {d.region}")
        seen_keys.add(d.key)
        for rep in d.replicas:
            _check_replica(d, rep)
            if rep.id in replica_ids:
                raise TopologyError(f"replica id {rep.id!r} is used twice")
            replica_ids.add(rep.id)
            if rep.kind == "local":
                if d.model in local_models:
                    raise TopologyError(f"{d.model}: at most one local replica per model")
                if t.regions and d.region != t.gateway_region:
                    # Residency: the gateway's own engine runs where the gateway runs; labelled
                    # with another region, requests would run somewhere other than they say.
                    raise TopologyError(
                        f"{d.model} in {d.region}: a local replica runs in this gateway's "
                        f"region ({t.gateway_region}); use an upstream replica there"
                    )
                local_models.add(d.model)
    for (a, b), ms in t.latency_ms.items():
        if a not in known or b not in known:
            raise TopologyError(f"latency between unknown regions {a!r}, {b!r}")
        if not ms >= 0:  # also rejects NaN
            raise TopologyError(f"latency {a}-{b} must be >= 0")
        if (a, b) != _pair(a, b):
            raise TopologyError("latency keys must be sorted pairs (use parse_latency)")
    if t.gateway_region not in known and t.regions:
        raise TopologyError(f"gateway_region {t.gateway_region!r} is not a region")


def _check_replica(d: Deployment, r: Replica) -> None:
    where = f"replica {r.id!r} of {d.model} in {d.region}"
    if not _REPLICA_ID.match(r.id):
        raise TopologyError(f"{where}: bad id")
    if r.kind not in KINDS:
        raise TopologyError(f"{where}: kind must be one of {KINDS}")
    if r.kind == "upstream":
        if not r.base_url or not r.base_url.startswith(("http://", "https://")):
            raise TopologyError(f"{where}: an upstream replica needs an http(s) base_url")
    elif r.base_url:
        raise TopologyError(f"{where}: a local replica has no base_url")
    if r.max_concurrency is not None and r.max_concurrency < 1:
        raise TopologyError(f"{where}: max_concurrency must be >= 1")


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
    _keys(data, {"gateway_region", "regions", "deployments", "latency_ms"}, "topology")
    try:
        regions = tuple(_region(r) for r in data.get("regions", []))
        deployments = tuple(_name_replicas(_deployment(d)) for d in data.get("deployments", []))
        latency = parse_latency(data.get("latency_ms", {}))
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, TopologyError):
            raise
        raise TopologyError(f"malformed topology: {exc}") from None
    gateway = data.get("gateway_region") or (regions[0].id if regions else LOCAL_REGION)
    return Topology(regions, deployments, str(gateway), latency)


def _keys(data: Mapping[str, Any], allowed: set[str], what: str) -> None:
    if not isinstance(data, Mapping):
        raise TopologyError(f"{what} must be a table")
    unknown = set(data) - allowed
    if unknown:
        raise TopologyError(f"unknown keys in {what}: {sorted(unknown)}")


def _region(r: Mapping[str, Any]) -> Region:
    _keys(r, {"id", "name", "jurisdiction", "lat", "lon", "enabled"}, "a region")
    lat, lon = r.get("lat"), r.get("lon")
    code = str(r.get("jurisdiction", ""))
    try:
        code = code and jurisdiction_code(code)
    except ValueError as exc:
        raise TopologyError(f"region {r.get('id')!r}: jurisdiction {code!r}: {exc}") from None
    return Region(
        id=str(r["id"]),
        name=str(r.get("name", "")),
        jurisdiction=code,
        lat=None if lat is None else float(lat),
        lon=None if lon is None else float(lon),
        enabled=bool(r.get("enabled", True)),
    )


def _deployment(d: Mapping[str, Any]) -> Deployment:
    _keys(d, {"model", "region", "replicas"}, "a deployment")
    return Deployment(
        model=str(d["model"]),
        region=str(d["region"]),
        replicas=tuple(_replica(r) for r in d.get("replicas", [])),
    )


def _replica(r: Mapping[str, Any]) -> Replica:
    fields = {"id", "kind", "base_url", "upstream_model", "health_url", "max_concurrency"}
    _keys(r, fields, "a replica")
    mc = r.get("max_concurrency")
    return Replica(
        id=str(r.get("id", "")),
        kind=r.get("kind", "upstream"),
        base_url=r.get("base_url"),
        upstream_model=r.get("upstream_model"),
        health_url=r.get("health_url"),
        max_concurrency=None if mc is None else int(mc),
    )


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


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    s = str(v)
    escaped = s.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(
        c if c.isprintable() else f"\\U{ord(c):08x}" if ord(c) > 0xFFFF else f"\\u{ord(c):04x}"
        for c in escaped
    )
    return f'"{escaped}"'


def _toml_fields(obj: Any, names: Iterable[str], defaults: Any) -> list[str]:
    lines = []
    for name in names:
        v = getattr(obj, name)
        if v is None or (v == getattr(defaults, name) and name not in ("id", "kind")):
            continue
        lines.append(f"{name} = {_toml_value(v)}")
    return lines


def dumps(t: Topology) -> str:
    """The topology as TOML that ``loads`` reads back to an equal ``Topology``."""
    out = [
        "# modelgrid topology (the admin API rewrites this file; comments are not kept)",
        f"gateway_region = {_toml_value(t.gateway_region)}",
    ]
    for r in t.regions:
        out += ["", "[[regions]]"]
        out += _toml_fields(r, ("id", "name", "jurisdiction", "lat", "lon", "enabled"), Region(""))
    if t.latency_ms:
        out += ["", "[latency_ms]"]
        rows: dict[str, list[str]] = {}
        for (a, b), ms in sorted(t.latency_ms.items()):
            rows.setdefault(a, []).append(f"{_toml_value(b)} = {_toml_value(float(ms))}")
        out += [f"{_toml_value(a)} = {{ {', '.join(cells)} }}" for a, cells in rows.items()]
    replica_fields = ("id", "kind", "base_url", "upstream_model", "health_url", "max_concurrency")
    for d in t.deployments:
        out += ["", "[[deployments]]", f"model = {_toml_value(d.model)}"]
        out.append(f"region = {_toml_value(d.region)}")
        for rep in d.replicas:
            out.append("[[deployments.replicas]]")
            out += _toml_fields(rep, replica_fields, Replica(""))
    return "\n".join(out) + "\n"


def save(t: Topology, path: Path) -> None:
    """Write ``t`` to ``path`` atomically (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dumps(t), encoding="utf-8")
    tmp.replace(path)


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
    "dumps",
    "from_dict",
    "load",
    "loads",
    "parse_latency",
    "save",
    "with_local_models",
]
