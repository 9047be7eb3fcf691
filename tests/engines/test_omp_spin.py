"""The llama.cpp engine shortens GNU OpenMP's barrier spin before llama.cpp's libraries load,
and leaves a value the environment sets alone (``engines.llamacpp``'s docstring: decode beside
a busy process 95 vs 772 ms a token through ``modelgrid engine``)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "import os\n"
    "before = 'libgomp' in open('/proc/self/maps').read()\n"
    "import modelgrid.engines.llamacpp\n"
    "after = 'libgomp' in open('/proc/self/maps').read()\n"
    "print(os.environ['GOMP_SPINCOUNT'], before, after)\n"
)


def _spincount(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.strip()


def test_spin_count_is_set_before_libgomp_loads() -> None:
    # the value is in the environment, and llama.cpp's OpenMP runtime loaded after it was
    assert _spincount() == "1000 False True"


def test_a_spin_count_of_the_environment_is_kept() -> None:
    assert _spincount(GOMP_SPINCOUNT="250000") == "250000 False True"
