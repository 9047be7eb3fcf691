"""``scripts/llama_build.py``: which instruction sets a CPU gets, and never AMX."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "llama_build.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llama_build", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lb = _module()
HASWELL = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}
SKYLAKE_X = HASWELL | {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}
SAPPHIRE_RAPIDS = SKYLAKE_X | {"avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"}


def test_an_avx2_cpu_gets_the_avx2_set() -> None:
    level, options = lb.choose(HASWELL)
    assert (level, options) == ("avx2", ["SSE42", "AVX", "AVX2", "FMA", "F16C", "BMI2"])
    assert lb.tag(level, options) == "avx2"


def test_an_amx_cpu_gets_avx512_with_its_extensions_and_never_amx() -> None:
    level, options = lb.choose(SAPPHIRE_RAPIDS)
    assert level == "avx512"
    assert options[-4:] == ["AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"]
    assert lb.tag(level, options) == "avx512-vbmi-vnni-bf16"
    args = lb.cmake_args(options)
    assert "-DGGML_NATIVE=OFF" in args
    assert "-DGGML_AMX_TILE=OFF" in args and "-DGGML_AMX_INT8=OFF" in args
    assert "AMX_TILE=ON" not in args and "AMX_INT8=ON" not in args


def test_a_wide_build_needs_every_flag_it_was_built_for() -> None:
    _, options = lb.choose(SAPPHIRE_RAPIDS)
    assert not lb.needed_flags(options) <= SKYLAKE_X  # must not be reused there
    _, plain = lb.choose(SKYLAKE_X)
    assert lb.needed_flags(plain) <= SKYLAKE_X and lb.tag("avx512", plain) == "avx512"


def test_the_safest_level_can_be_asked_for_and_a_cpu_without_avx2_is_refused() -> None:
    assert lb.choose(SAPPHIRE_RAPIDS, "avx2")[0] == "avx2"
    with pytest.raises(SystemExit, match="avx2"):
        lb.choose({"sse4_2", "avx"})
    with pytest.raises(SystemExit, match="no AVX-512"):
        lb.choose(HASWELL, "avx512")


def test_cpu_flags_reads_the_first_processor(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert lb.cpu_flags(info) == {"fpu", "avx2", "fma"}
    assert lb.cpu_flags(tmp_path / "missing") == set()
