"""``engines.check``: how a child's death reads, and a failing check."""

from __future__ import annotations

import signal
from pathlib import Path

from modelgrid.engines.check import explain, run_check


def test_a_death_by_signal_names_the_signal_and_its_meaning() -> None:
    assert explain(-signal.SIGILL).startswith("SIGILL: the build uses an instruction")
    assert explain(-signal.SIGSEGV).startswith("SIGSEGV: a fault inside llama.cpp")
    assert "AMX" in explain(-signal.SIGSEGV)
    assert explain(-signal.SIGKILL) == "SIGKILL: killed (out of memory?)"


def test_a_check_that_cannot_load_reports_its_last_error_line(tmp_path: Path) -> None:
    result = run_check("no-such-model", tmp_path, timeout_s=60)
    assert not result.ok and result.returncode == 1
    assert "KeyError" in result.detail and "no-such-model" in result.detail
