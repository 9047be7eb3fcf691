"""What exists, for the control plane to check names against: regions, jurisdictions, models.

A workspace, key or price that names a region, jurisdiction or model nobody serves would
never match a request (or, worse, match one later, when something of that name appears):
the control plane refuses it with a 400 that lists what does exist. The inventory is read
from the topology (the live one in a gateway, the file in the CLI) plus the models this
gateway runs itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from modelgrid.core.errors import InvalidRequestError
from modelgrid.routing.topology import Topology


@dataclass(frozen=True, slots=True)
class Inventory:
    """A snapshot of the names requests can run under.

    Attributes:
        regions: Region ids of the topology.
        jurisdictions: The regions' jurisdiction codes (empty ones left out).
        models: Served model ids (deployed in the topology, or run by this gateway).
        gateway_region: Where this gateway runs (a new workspace's default home, and where
            its files are stored).
        gateway_jurisdiction: The gateway region's jurisdiction code (empty if it has none).
    """

    regions: frozenset[str]
    jurisdictions: frozenset[str]
    models: frozenset[str]
    gateway_region: str
    gateway_jurisdiction: str = ""

    @classmethod
    def of(cls, topology: Topology, models: Iterable[str] = ()) -> Inventory:
        home = topology.region(topology.gateway_region)
        return cls(
            regions=frozenset(topology.region_ids()),
            jurisdictions=frozenset(r.jurisdiction for r in topology.regions if r.jurisdiction),
            models=frozenset([*topology.models(), *models]),
            gateway_region=topology.gateway_region,
            gateway_jurisdiction=home.jurisdiction if home is not None else "",
        )

    def check_regions(self, values: Iterable[str] | None, param: str) -> None:
        """Raises: InvalidRequestError naming the unknown regions and the known ones."""
        _check(values, self.regions, "region", param)

    def check_jurisdictions(self, values: Iterable[str] | None, param: str) -> None:
        """Raises: InvalidRequestError: no region of the topology lies in one of them."""
        _check(values, self.jurisdictions, "jurisdiction", param, " (no region lies in it)")

    def check_models(self, values: Iterable[str] | None, param: str) -> None:
        """Raises: InvalidRequestError naming the models nobody serves."""
        _check(values, self.models, "model", param, " (no deployment serves it)")


def _check(
    values: Iterable[str] | None, known: frozenset[str], what: str, param: str, why: str = ""
) -> None:
    if values is None:
        return
    unknown = sorted(set(values) - known)
    if unknown:
        names = ", ".join(f"'{v}'" for v in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise InvalidRequestError(
            f"Unknown {what}{plural} {names}{why}; known: {', '.join(sorted(known)) or 'none'}.",
            param=param,
            code=f"unknown_{what}",
        )


__all__ = ["Inventory"]
