"""One line for a pydantic validation error (``core.validation``)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelgrid.core.validation import field_path, first_problem


class Rate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: str
    rps: float = Field(gt=0)


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    demand: list[Rate]
    latency_ms: dict[str, float] = {}


def _problem(data: object) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        Doc.model_validate(data)
    return first_problem(info.value)


def test_paths_index_lists_and_quote_odd_keys() -> None:
    assert field_path(("regions", 1, "id")) == "regions[1].id"
    assert field_path(("latency_ms", "a b", "[key]")) == "latency_ms.'a b'"
    assert field_path(("eu-west_1",)) == "eu-west_1"
    assert field_path(()) == ""


def test_the_first_error_with_its_value_and_how_many_more() -> None:
    assert _problem({"demand": [{"region": "eu", "rps": -1}]}) == (
        "demand[0].rps", "Input should be greater than 0 (got -1)")  # fmt: skip
    assert _problem({"demand": [{"region": "eu", "rps": 1, "burst": 2}]}) == (
        "demand[0].burst", "unknown key")  # fmt: skip
    assert _problem({"demand": [{"rps": "x" * 100}]}) == (
        "demand[0].region", "Field required (and 1 more)")  # fmt: skip
    path, why = _problem({"demand": [{"region": "eu", "rps": "y" * 100}]})
    assert path == "demand[0].rps" and why.endswith("(got '" + "y" * 76 + "...)")
    assert _problem([1]) == ("", "Input should be a valid dictionary or instance of Doc")  # no list
