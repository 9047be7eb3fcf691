"""Structure rules from DESIGN.md, enforced: module size and import contracts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "modelgrid"


def test_no_module_over_800_lines() -> None:
    big = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 800
    }
    assert big == {}


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is part of the test extra"
    out = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=SRC.parents[1])
    assert out.returncode == 0, out.stdout[-2000:]


def test_help_does_not_import_llama_cpp() -> None:
    code = "import sys; from modelgrid.cli import app; import modelgrid.app; print('llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
