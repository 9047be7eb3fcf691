#!/usr/bin/env python3
"""Install llama-cpp-python built for the instruction sets this CPU has, never ``-march=native``.

llama-cpp-python ships no Linux wheel, so pip compiles it, by default with ``-march=native``:
that binary may use any instruction the build machine advertises, AMX included. Inside many
virtual machines AMX is advertised but worker threads may not use its tiles (llama.cpp PR
#26954, ollama #17249): the first matrix product dies with a general protection fault. A wheel
built that way and kept in pip's cache also dies (SIGILL) on a CPU without those instructions.

So this script builds with ``GGML_NATIVE=OFF`` and an explicit instruction set chosen from
``/proc/cpuinfo`` — level ``avx2`` (AVX, AVX2, FMA, F16C, BMI2: any x86-64 CPU since 2013) or
level ``avx512`` (that plus AVX-512 F/CD/VL/DQ/BW and, where present, VBMI, VNNI and BF16) —
and never AMX. The wheel is kept in ``$XDG_CACHE_HOME/modelgrid/wheels`` under a name that
carries its level and instruction set, and reused only on a CPU that has every one of them;
pip's own cache never sees it (``--no-cache-dir``). ``.venv/.llama-build`` records what is
installed, so a virtual environment carried to a CPU without those instructions is rebuilt.

Usage (``scripts/bootstrap.sh`` runs it; stdlib only)::

    python scripts/llama_build.py ensure [--level auto|avx2|avx512]   # build or reuse, install
    python scripts/llama_build.py show                                # what this CPU gets
    python scripts/llama_build.py checked | mark-checked              # the one-token check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VERSION = "0.3.36"
PACKAGE = f"llama-cpp-python=={VERSION}"
ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / ".venv" / ".llama-build"

# ggml option -> the /proc/cpuinfo flags it needs (ggml/src/ggml-cpu/CMakeLists.txt: the -m
# flags each option adds).
BASE = {
    "SSE42": ("sse4_2",),
    "AVX": ("avx",),
    "AVX2": ("avx2",),
    "FMA": ("fma",),
    "F16C": ("f16c",),
    "BMI2": ("bmi2",),
}
AVX512 = {"AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")}
AVX512_EXTRAS = {
    "AVX512_VBMI": ("avx512vbmi",),
    "AVX512_VNNI": ("avx512_vnni",),
    "AVX512_BF16": ("avx512_bf16",),
}
NEVER = ("AMX_TILE", "AMX_INT8", "AMX_BF16", "AVX_VNNI")  # always OFF (see the module doc)


def cpu_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The flags of the first processor in ``/proc/cpuinfo`` (empty if unreadable)."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has(flags: set[str], table: dict[str, tuple[str, ...]]) -> list[str]:
    return [opt for opt, need in table.items() if all(f in flags for f in need)]


def choose(flags: set[str], level: str = "auto") -> tuple[str, list[str]]:
    """(level, the ggml options to turn on) for a CPU with ``flags``.

    Raises:
        SystemExit: the CPU lacks AVX2/FMA/F16C (modelgrid's floor), or ``avx512`` was asked
            for on a CPU without it.
    """
    base = has(flags, BASE)
    if len(base) < len(BASE):
        missing = sorted({f for need in BASE.values() for f in need} - flags)
        raise SystemExit(
            f"llama_build: this CPU lacks {', '.join(missing)}; modelgrid's embedded engine "
            "needs an x86-64 CPU with AVX2, FMA and F16C (2013 or later)."
        )
    wide = has(flags, AVX512)
    if level == "avx512" and not wide:
        raise SystemExit("llama_build: --level avx512 asked for, but this CPU has no AVX-512.")
    if level == "avx2" or not wide:
        return "avx2", base
    return "avx512", [*base, *wide, *has(flags, AVX512_EXTRAS)]


def needed_flags(options: list[str]) -> set[str]:
    tables = {**BASE, **AVX512, **AVX512_EXTRAS}
    return {f for opt in options for f in tables[opt]}


def tag(level: str, options: list[str]) -> str:
    extras = [o.removeprefix("AVX512_").lower() for o in options if o in AVX512_EXTRAS]
    return "-".join([level, *extras])


def cmake_args(options: list[str]) -> str:
    on = [f"-DGGML_{o}=ON" for o in options]
    off = [f"-DGGML_{o}=OFF" for o in NEVER]
    return " ".join(["-DGGML_NATIVE=OFF", *on, *off, "-DLLAVA_BUILD=OFF"])


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelgrid" / "wheels"


def installed() -> dict[str, object] | None:
    try:
        data = json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == VERSION else None


def build(python: str, options: list[str], dest: Path) -> Path:
    """Compile the wheel into ``dest`` (about 6 minutes on 2 cores)."""
    dest.mkdir(parents=True, exist_ok=True)
    print(
        f"    compiling llama-cpp-python {VERSION} for {', '.join(options)} "
        "(about 6 minutes on 2 cores, once per instruction set; pip says 'still running...')",
        flush=True,
    )
    env = {
        **os.environ,
        "CMAKE_ARGS": cmake_args(options),
        "FORCE_CMAKE": "1",
        "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get(
            "CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1)
        ),
    }
    with tempfile.TemporaryDirectory(prefix="llama-wheel-") as tmp:
        cmd = [python, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-cache-dir"]
        cmd += ["--no-deps", "--no-binary", "llama-cpp-python", "-w", tmp, PACKAGE]
        subprocess.run(cmd, env=env, check=True)
        wheels = list(Path(tmp).glob("llama_cpp_python-*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"llama_build: expected one wheel, found {wheels}")
        target = dest / wheels[0].name
        shutil.move(str(wheels[0]), target)
    return target


def ensure(python: str, level: str) -> int:
    """Install the build this CPU gets (``level`` auto: the pinned level, else the widest).
    An explicit level is pinned for this virtual environment (the bootstrap pins ``avx2``
    when the wider build fails its check)."""
    flags = cpu_flags()
    have = installed()
    pinned = str(have.get("pinned") or "") if have else ""
    chosen, options = choose(flags, level if level != "auto" else pinned or "auto")
    name = tag(chosen, options)
    if have and have.get("tag") == name and have.get("options") == options:
        return 0
    if have and not needed_flags(list(have.get("options") or [])) <= flags:
        print(f"==> the installed llama.cpp build ({have.get('tag')}) does not fit this CPU")
    dest = cache_dir() / f"llama-cpp-python-{VERSION}-{name}"
    wheels = sorted(dest.glob("llama_cpp_python-*.whl"))
    if wheels:
        print(f"==> llama-cpp-python {VERSION} for {name}: the wheel built earlier for it")
        wheel = wheels[-1]
    else:
        print(f"==> llama-cpp-python {VERSION} for {name}: not built yet on this machine")
        wheel = build(python, options, dest)
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    cmd += ["--no-deps", "--force-reinstall", "--no-cache-dir", str(wheel)]
    subprocess.run(cmd, check=True)
    # Its Python dependencies, from the index as usual (no compiled code among them).
    deps = ["numpy>=1.20.0", "typing-extensions>=4.5.0", "diskcache>=5.6.1", "jinja2>=2.11.3"]
    subprocess.run([*cmd[:6], "-q", *deps], check=True)
    record = {"version": VERSION, "tag": name, "options": options, "wheel": str(wheel)}
    if level != "auto" or pinned:
        record["pinned"] = chosen
    RECORD.write_text(json.dumps(record))
    print(f"    installed: GGML_NATIVE=OFF, {' '.join(options)} (no AMX)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("ensure", help="install a build that fits this CPU (build it if needed)")
    e.add_argument("--level", choices=("auto", "avx2", "avx512"), default="auto")
    e.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    sub.add_parser("show", help="print what this CPU gets and what is installed")
    sub.add_parser("checked", help="exit 0 if the installed build passed its check")
    sub.add_parser("mark-checked", help="record that the installed build passed its check")
    args = p.parse_args(argv)
    have = installed()
    if args.cmd == "checked":
        return 0 if have and have.get("checked") else 1
    if args.cmd == "mark-checked":
        if have is None:
            return 1
        RECORD.write_text(json.dumps({**have, "checked": True}))
        return 0
    if args.cmd == "show":
        chosen, options = choose(cpu_flags())
        print(
            json.dumps({"cpu": tag(chosen, options), "options": options, "installed": installed()})
        )
        return 0
    return ensure(args.python, args.level)


if __name__ == "__main__":
    sys.exit(main())
