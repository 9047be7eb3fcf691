"""A plugin's schema may not make the gateway fetch anything: ``$ref`` outside the schema is
refused when the app is made (``control.app_tools``), and arguments are checked against an
empty reference registry (``serving.app_tools.argument_problem``), so a tool stored before
that rule cannot fetch either. jsonschema's default resolution fetches http and file URLs
itself (found by a new-user trial: a file's content came back in an error message)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from modelgrid.control.app_tools import check_tools
from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.app_tools import AppTool
from modelgrid.serving.app_tools import argument_problem


def tool(properties: dict[str, Any], **schema: Any) -> AppTool:
    return AppTool(
        name="w",
        description="d",
        parameters={"type": "object", "properties": properties, **schema},
        url="https://api.example.com/w",
    )


def test_a_file_reference_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "s.json"
    secret.write_text(json.dumps({"enum": ["LOCAL-FILE-CONTENT-42"]}))
    schema = {"type": "object", "properties": {"k": {"$ref": secret.as_uri()}}}
    problem = argument_problem(schema, {"k": "x"})
    assert problem is not None
    assert problem.startswith("the tool's schema cannot be applied (")
    assert "LOCAL-FILE-CONTENT-42" not in problem


def test_references_within_the_schema_still_work() -> None:
    schema = {
        "type": "object",
        "properties": {"unit": {"$ref": "#/$defs/unit"}},
        "$defs": {"unit": {"enum": ["celsius", "fahrenheit"]}},
    }
    assert argument_problem(schema, {"unit": "celsius"}) is None
    assert argument_problem(schema, {"unit": "kelvin"}) == (
        "'kelvin' is not one of ['celsius', 'fahrenheit'] (at 'unit')"
    )


@pytest.mark.parametrize(
    ("properties", "schema", "param"),
    [
        ({"k": {"$ref": "http://127.0.0.1:8029/x"}}, {}, "tools[0].parameters.properties.k.$ref"),
        ({"k": {"$ref": "file:///etc/passwd"}}, {}, "tools[0].parameters.properties.k.$ref"),
        ({"k": {"anyOf": [{"type": "string"}, {"$ref": "other.json"}]}}, {},
         "tools[0].parameters.properties.k.anyOf[1].$ref"),
        ({}, {"$defs": {"d": {"$dynamicRef": "https://x.example/s"}}},
         "tools[0].parameters.$defs.d.$dynamicRef"),
        ({"k": {"$ref": 5}}, {}, "tools[0].parameters.properties.k.$ref"),
    ],
)  # fmt: skip
def test_references_outside_the_schema_are_refused(
    properties: dict[str, Any], schema: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        check_tools([tool(properties, **schema)], "auto")
    assert exc.value.param == param
    assert exc.value.message == (
        f"'{param}' must point within the schema ('#/$defs/…'): a plugin's schema may not "
        "reference other documents."
    )


def test_a_local_reference_passes_creation() -> None:
    check_tools(
        [tool({"unit": {"$ref": "#/$defs/unit"}}, **{"$defs": {"unit": {"type": "string"}}})],
        "auto",
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://ex.com:0/", "the URL's port must be 1..65535"),
        ("http://ex.com:65536/", "not a valid URL (Port out of range 0-65535)"),
        # checked before urlsplit, whose message quotes the port as it is (a raw DEL)
        ("http://ex.com:\x7f/", "the URL may not contain spaces or control characters"),
        ("http://ex.com:8\t0/", "the URL may not contain spaces or control characters"),
    ],
)
def test_a_url_port_must_be_one_a_socket_can_reach(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        AppTool(name="w", description="d", url=url)
    assert AppTool(name="w", description="d", url="http://ex.com:65535/").url.endswith(":65535/")
