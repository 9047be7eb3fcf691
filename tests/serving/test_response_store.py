"""Where stored responses may live: the gateway's region, within the key's residency."""

from __future__ import annotations

import pytest

from modelgrid.config import ResponsesSettings
from modelgrid.core.errors import PermissionDeniedError
from modelgrid.serving.response_store import ResponseStore
from modelgrid.tenancy.service import Principal


def _principal(**scope: frozenset[str] | None) -> Principal:
    return Principal(key_id="k", workspace_id="w", role="tenant", name="t", **scope)  # type: ignore[arg-type]


def _store(home: tuple[str, str]) -> ResponseStore:
    return ResponseStore(None, ResponsesSettings(), lambda: home)  # type: ignore[arg-type]


def test_a_key_allowed_in_the_gateways_region_stores_there() -> None:
    store = _store(("eu-central", "DE"))
    assert store.storage_region(_principal()) == "eu-central"
    assert (
        store.storage_region(_principal(allowed_regions=frozenset({"eu-central"}))) == "eu-central"
    )
    assert store.storage_region(_principal(allowed_jurisdictions=frozenset({"DE"}))) == "eu-central"


@pytest.mark.parametrize(
    "scope",
    [
        {"allowed_regions": frozenset({"us-east"})},
        {"allowed_jurisdictions": frozenset({"US"})},
    ],
)
def test_a_key_fenced_elsewhere_is_refused_before_anything_runs(
    scope: dict[str, frozenset[str]],
) -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        _store(("eu-central", "DE")).storage_region(_principal(**scope))
    assert caught.value.status == 403 and caught.value.code == "region_not_allowed"
    assert caught.value.param == "store" and "'store': false" in caught.value.message
