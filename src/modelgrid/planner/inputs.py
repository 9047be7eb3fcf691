"""The planner's files: the demand forecast and the plan settings (TOML, validated with
pydantic; a problem is one ``PlanInputError`` line naming the field).

A forecast (``modelgrid plan --forecast demand.toml``)::

    [[demand]]
    workspace = "acme"                    # default "default"
    region = "eu-west-1"                  # where the requests arrive (their gateway)
    model = "qwen2.5-coder-0.5b-instruct"
    hour = 14                             # UTC hour of day; leave out for every hour
    rps = 1.5                             # requests per second

    [shapes."qwen2.5-coder-0.5b-instruct"]
    prompt = { kind = "lognormal", mean = 400, cv = 0.8 }   # tokens
    output = { kind = "lognormal", mean = 120, cv = 0.6 }

    [arrivals]                            # every stream (default: poisson)
    kind = "gamma"
    ca2 = 2.0
    [[stream_arrivals]]                   # one stream's own
    region = "eu-west-1"
    model = "qwen2.5-coder-0.5b-instruct"
    kind = "mmpp"
    burst_factor = 5.0

The plan settings (``--config plan.toml``)::

    currency = "USD"
    [slo]
    ttft_p95_ms = 1500
    tpot_p95_ms = 80
    [costs]                               # a replica-hour, micro-units of the currency
    default_micros = 1_000_000
    regions = { "eu-west-1" = 1_200_000 }
    [[workspaces]]                        # residency (--from-usage reads the database's)
    name = "acme"
    home_region = "eu-west-1"
    allowed_jurisdictions = ["IE", "DE"]
    [[extra_regions]]                     # regions a what-if may open (--add-region)
    id = "mx-central-1"
    jurisdiction = "MX"
    lat = 19.4
    lon = -99.1
    latency_ms = { "us-east-1" = 45.0 }
    cost_micros = 800_000
    [options]                             # PlanOptions: policy, max_concurrency, url_template…
    url_template = "http://{model}-{index}.{region}.example:9001/v1"
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelgrid.planner.errors import PlanInputError, problem
from modelgrid.planner.scenario import HOURS, Demand, PlanOptions, Residency, Slo
from modelgrid.planner.workload import POISSON, ArrivalSpec, RequestShape


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DemandRow(_File):
    workspace: str = "default"
    region: str
    model: str
    hour: Annotated[int, Field(ge=0, le=23)] | None = None
    rps: float

    @field_validator("rps")
    @classmethod
    def _rate(cls, rps: float) -> float:
        """Named with the file (Scenario.check names the ledger's rows the same way)."""
        if not (rps >= 0 and math.isfinite(rps)):
            raise ValueError("a rate must be a finite number >= 0")
        return rps


class StreamArrivals(ArrivalSpec):
    region: str
    model: str


class ForecastFile(_File):
    demand: list[DemandRow] = Field(default_factory=list)
    shapes: dict[str, RequestShape] = Field(default_factory=dict)
    arrivals: ArrivalSpec = POISSON
    stream_arrivals: list[StreamArrivals] = Field(default_factory=list)

    def rows(self) -> tuple[Demand, ...]:
        """Each row once per hour it covers."""
        out = []
        for r in self.demand:
            hours: Sequence[int] = range(HOURS) if r.hour is None else (r.hour,)
            out += [Demand(r.workspace, r.region, r.model, h, r.rps) for h in hours]
        return tuple(out)

    def stream_overrides(self) -> dict[tuple[str, str], ArrivalSpec]:
        return {
            (s.region, s.model): ArrivalSpec(**s.model_dump(exclude={"region", "model"}))
            for s in self.stream_arrivals
        }


class Costs(_File):
    default_micros: Annotated[int, Field(ge=0)] = 1_000_000
    regions: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)


class ExtraRegion(_File):
    id: str
    name: str = ""
    jurisdiction: str = ""
    lat: float | None = None
    lon: float | None = None
    latency_ms: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    cost_micros: Annotated[int, Field(ge=0)] | None = None


class PlanFile(_File):
    currency: str = "USD"
    slo: Slo = Field(default_factory=Slo)
    costs: Costs = Field(default_factory=Costs)
    workspaces: list[Residency] = Field(default_factory=list)
    extra_regions: list[ExtraRegion] = Field(default_factory=list)
    options: PlanOptions = Field(default_factory=PlanOptions)


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanInputError(f"{path}: no such file", param=str(path)) from None
    except OSError as exc:  # a directory, no permission: the reason, not the errno repr
        raise PlanInputError(f"{path}: {exc.strerror or exc}", param=str(path)) from None
    except UnicodeDecodeError as exc:
        raise PlanInputError(
            f"{path}: not UTF-8 text (byte {exc.start})", param=str(path)
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise PlanInputError(f"{path}: {exc}", param=str(path)) from None


def load_forecast(path: Path) -> ForecastFile:
    """Read a forecast file.

    Raises:
        PlanInputError: unreadable, not TOML, or a field out of its schema (named).
    """
    try:
        return ForecastFile.model_validate(_read(path))
    except ValidationError as exc:
        raise PlanInputError(problem(exc, str(path)), param=str(path)) from None


def load_plan_file(path: Path | None) -> PlanFile:
    """Read the plan settings (``None``: the defaults).

    Raises:
        PlanInputError: as ``load_forecast``.
    """
    if path is None:
        return PlanFile()
    try:
        return PlanFile.model_validate(_read(path))
    except ValidationError as exc:
        raise PlanInputError(problem(exc, str(path)), param=str(path)) from None


__all__ = [
    "Costs",
    "DemandRow",
    "ExtraRegion",
    "ForecastFile",
    "PlanFile",
    "load_forecast",
    "load_plan_file",
]
