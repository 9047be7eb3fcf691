"""The engines shorten GNU OpenMP's barrier spin before their native libraries load their
OpenMP runtime (``engines.openmp``: llama.cpp decode beside a busy process 95 vs 772 ms a
token), and leave a value the environment sets alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# What GOMP_SPINCOUNT held when the OpenMP runtime loaded: read at the first import or dlopen
# after libgomp appears in the process's memory map (the runtime reads it as it loads).
PROBE = (
    "import os, sys\n"
    "def gomp(): return 'libgomp' in open('/proc/self/maps').read()\n"
    "seen = []\n"
    "def hook(event, args):\n"
    "    if not seen and event in ('import', 'ctypes.dlopen') and gomp():\n"
    "        seen.append(os.environ.get('GOMP_SPINCOUNT'))\n"
    "before = gomp()\n"
    "sys.addaudithook(hook)\n"
    "__import__(sys.argv[1])\n"
    "print(seen[0] if seen else None, before)\n"
)
ENGINES = ("modelgrid.engines.llamacpp", "modelgrid.engines.sentence_transformers")


def _spincount(module: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.strip()


@pytest.mark.parametrize("module", ENGINES)
def test_spin_count_is_set_before_the_openmp_runtime_loads(module: str) -> None:
    # no OpenMP runtime before the engine's import; when one loaded, the value was set
    assert _spincount(module) == "1000 False"


@pytest.mark.parametrize("module", ENGINES)
def test_a_spin_count_of_the_environment_is_kept(module: str) -> None:
    assert _spincount(module, GOMP_SPINCOUNT="250000") == "250000 False"
