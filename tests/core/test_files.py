"""``core.files.write_text_atomic``: the file whole or not at all, links followed, nothing
that is not a regular file replaced (the topology the gateways read uses it too)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelgrid.core.files import write_text_atomic
from modelgrid.routing import topology as topo


def test_a_topology_saved_through_a_link_rewrites_its_target(tmp_path: Path) -> None:
    real, link = tmp_path / "shared" / "topology.toml", tmp_path / "topology.toml"
    real.parent.mkdir()
    real.write_text("")
    link.symlink_to(real)
    t = topo.default_topology(["m"])
    topo.save(t, link)
    assert link.is_symlink() and topo.load(real) == t
    assert not list(tmp_path.rglob(".*.tmp"))


def test_what_is_not_a_regular_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "afile").write_text("x")
    cases = ((fifo, "not a regular file"), (tmp_path, "is a directory"), (Path(""), "not a file name"),
             (tmp_path / "afile" / "t.toml", "is a file, not a folder"))  # fmt: skip
    for path, why in cases:
        with pytest.raises(OSError, match=why):
            write_text_atomic(path, "x")
    assert fifo.exists() and not fifo.is_file()
    assert (tmp_path / "afile").read_text() == "x"
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_trial_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new" / "p.json"
    write_text_atomic(target, None)
    assert not target.exists() and not list(tmp_path.rglob(".*.tmp"))
