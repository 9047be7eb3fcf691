"""The topology example in docs/routing.md is a valid topology that says what the text says."""

from __future__ import annotations

import re
from pathlib import Path

from modelgrid.routing import topology as topo

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"


def test_the_documented_topology_file_loads() -> None:
    [block] = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    t = topo.loads(block)
    model = "qwen2.5-coder-0.5b-instruct"
    assert [r.id for r in t.regions] == ["ap-southeast-1", "eu-west-1", "us-east-1"]
    sg = t.deployment(model, "ap-southeast-1")
    assert sg is not None and [r.kind for r in sg.replicas] == ["local", "upstream"]
    eu = t.deployment(model, "eu-west-1")
    assert eu is not None and eu.replicas[0].id == f"eu-west-1/{model}/0"
    assert t.latency("eu-west-1", "ap-southeast-1") == 160.0
    assert topo.loads(topo.dumps(t)) == t
