"""docs/structured-outputs.md's keyword table says what ``protocol.json_schema`` does, and its
example refusal is the message a request gets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelgrid.core.errors import UnsupportedParameterError
from modelgrid.protocol import json_schema as js

DOC = (Path(__file__).resolve().parents[2] / "docs" / "structured-outputs.md").read_text()


def _rows() -> dict[str, str]:
    """Each keyword of the table -> its verdict column."""
    out: dict[str, str] = {}
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        for keyword in re.findall(r"`([^`]+)`", cells[0]):
            out[keyword.split(" ")[0]] = cells[1]
    return out


def test_the_table_covers_every_keyword_with_the_code_s_verdict() -> None:
    rows = _rows()
    enforced = {k for k, v in rows.items() if v.startswith("enforced")}
    annotations = {k for k, v in rows.items() if v.startswith("annotations")}
    refused = {k for k, v in rows.items() if v == "refused"}
    assert enforced == set(js.ENFORCED) | {"$defs", "definitions"}
    assert annotations == set(js.ANNOTATIONS) | {"x-…"}
    assert refused == set(js.REFUSED)


def test_the_documented_refusal_is_the_real_message() -> None:
    [block] = re.findall(r"```\n(The JSON schema.*?)```", DOC, re.S)
    schema = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}
    with pytest.raises(UnsupportedParameterError) as exc:
        js.enforceable_schema(schema, "response_format")
    assert exc.value.message == " ".join(block.split())


def test_the_documented_formats_are_the_enforced_ones() -> None:
    line = next(v for k, v in _rows().items() if k == "format")
    assert set(re.findall(r"`([a-z-]+)`", line)) == set(js.FORMATS)
