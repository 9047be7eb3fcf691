"""The topology's one schema: the topology file (``TopologyFile``) and the bodies of the
admin API (``/admin/v1/regions``, ``/admin/v1/deployments``) share these models.

They hold the rules of each field and object (id shapes, ranges, jurisdiction codes, an
upstream replica's URL, no control characters in a region's name or a model name:
``protocol.text.Label``); the rules across objects (unique ids, deployments in known regions,
a ``local`` replica only in the gateway's region, latency between known regions) are
``routing.topology``'s, which reads and writes the file and builds every ``Topology``
through these models. Bodies and the file forbid unknown fields. Response objects carry an
``object`` tag and, for replicas, their live state as this gateway sees it (circuit breaker,
requests in flight, probe round trip), which is not part of the topology itself.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from modelgrid.core.types import jurisdiction_code
from modelgrid.protocol.text import Label

RegionId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
ReplicaKind = Literal["local", "upstream"]
"""``local``: the gateway's in-process engine for the model; ``upstream``: an
OpenAI-compatible server (a ``modelgrid engine`` worker, vLLM …) at ``base_url``."""
ReplicaId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")]
Latency = Annotated[float, Field(ge=0, le=10_000)]
# ``core.types.jurisdiction_code``, or "" for a region under no particular jurisdiction.
RegionJurisdiction = Annotated[str, AfterValidator(lambda v: v and jurisdiction_code(v))]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegionSpec(_Body):
    """A region: ``jurisdiction`` is a country or bloc code (upper-cased, ``""``: none);
    ``lat``/``lon`` in degrees; ``enabled: false`` drains it (no new requests)."""

    id: RegionId
    name: Annotated[Label, Field(max_length=200)] = ""
    jurisdiction: RegionJurisdiction = ""
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    enabled: bool = True


class RegionCreate(RegionSpec):
    """A new region; ``latency_ms`` gives the expected RTT to other regions."""

    latency_ms: dict[RegionId, Latency] = Field(default_factory=dict)


class RegionPatch(_Body):
    """Changes the named fields; ``enabled: false`` drains the region (no new requests);
    ``latency_ms`` entries are set (others kept)."""

    name: Annotated[Label, Field(max_length=200)] | None = None
    jurisdiction: RegionJurisdiction | None = None
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    enabled: bool | None = None
    latency_ms: dict[RegionId, Latency] | None = None


class ReplicaSpec(_Body):
    """A replica of a deployment: ``upstream`` needs ``base_url`` (the API root, ``…/v1``);
    ``local`` is this gateway's in-process engine for the model. ``id`` defaults to
    ``<region>/<model>/<n>``. ``attempts`` (upstream only): attempts one request may make on
    this replica, more than 1 for an endpoint that balances over a pool of engines (a Ray
    Serve application, ``docs/fleet.md``); ``prefix_header``: a request header the prompt's
    prefix fingerprint is sent in (``x-session-id`` for Ray Serve)."""

    id: ReplicaId | None = None
    kind: ReplicaKind = "upstream"
    base_url: Annotated[str, Field(pattern=r"^https?://", max_length=2000)] | None = None
    upstream_model: Annotated[Label, Field(min_length=1, max_length=200)] | None = None
    health_url: Annotated[str, Field(pattern=r"^https?://", max_length=2000)] | None = None
    max_concurrency: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    attempts: Annotated[int, Field(ge=1, le=16)] = 1
    prefix_header: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,100}$")] | None = None

    @model_validator(mode="after")
    def _url_matches_kind(self) -> ReplicaSpec:
        if self.kind == "upstream" and self.base_url is None:
            raise ValueError("an upstream replica needs an http(s) base_url")
        if self.kind == "local" and self.base_url is not None:
            raise ValueError("a local replica has no base_url")
        if self.kind == "local" and (self.attempts != 1 or self.prefix_header is not None):
            raise ValueError("attempts and prefix_header are for upstream replicas")
        return self


class DeploymentSpec(_Body):
    """A model in a region and its replicas (creating or replacing the deployment)."""

    model: Annotated[Label, Field(min_length=1, max_length=200)]
    region: RegionId
    replicas: list[ReplicaSpec] = Field(min_length=1, max_length=256)


class TopologyFile(_Body):
    """The topology file (``MODELGRID_TOPOLOGY_FILE``; TOML, see ``routing.topology``).

    ``gateway_region``: where this gateway runs (default: the first region); ``latency_ms``:
    expected RTT in ms between two regions, ``{a: {b: ms}}``, either direction given.
    """

    gateway_region: RegionId | None = None
    regions: list[RegionSpec] = Field(default_factory=list)
    latency_ms: dict[RegionId, dict[RegionId, Latency]] = Field(default_factory=dict)
    deployments: list[DeploymentSpec] = Field(default_factory=list)


class ReplicaState(BaseModel):
    """What this gateway knows of a replica now: ``served`` / ``failed`` count requests sent
    to it (answered / failed on its side), ``probe_failures`` its failed health probes."""

    ready: bool
    breaker: Literal["closed", "open", "half_open"]
    in_flight: int
    rtt_ms: float | None
    last_probe_ok: bool | None
    last_error: str | None
    served: int
    failed: int
    probe_failures: int


class ReplicaObject(BaseModel):
    object: Literal["replica"] = "replica"
    id: str
    kind: str
    base_url: str | None
    upstream_model: str | None
    health_url: str | None
    max_concurrency: int | None
    attempts: int = 1
    prefix_header: str | None = None
    state: ReplicaState


class DeploymentObject(BaseModel):
    object: Literal["deployment"] = "deployment"
    model: str
    region: str
    replicas: list[ReplicaObject]


class RegionObject(BaseModel):
    object: Literal["region"] = "region"
    id: str
    name: str
    jurisdiction: str
    lat: float | None
    lon: float | None
    enabled: bool
    gateway: bool = Field(description="This gateway runs here (the latency origin).")
    latency_ms: float | None = Field(description="Expected RTT from the gateway.")
    models: list[str]
    replicas: int
    replicas_available: int


__all__ = [
    "DeploymentObject",
    "DeploymentSpec",
    "RegionCreate",
    "RegionObject",
    "RegionPatch",
    "RegionSpec",
    "ReplicaKind",
    "ReplicaObject",
    "ReplicaSpec",
    "ReplicaState",
    "TopologyFile",
]
