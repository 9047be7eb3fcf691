#!/usr/bin/env bash
# Create .venv and install modelgrid with the given extras, once per change of pyproject.toml.
# Usage: scripts/bootstrap.sh EXTRAS   (e.g. "embedded,embeddings" or "embedded,embeddings,test")
# With "embedded": llama-cpp-python is built for this CPU's instruction sets, never
# -march=native and never AMX (scripts/llama_build.py), then checked by a one-token generation
# in a child process; a build that dies there is replaced by the safest one (AVX2).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-embedded,embeddings}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating virtual environment in .venv"
  "$py" -m venv .venv
  .venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
fi
embedded=false
case ",$extras," in *,embedded,*) embedded=true ;; esac
if $embedded; then
  .venv/bin/python scripts/llama_build.py ensure
fi
stamp=".venv/.modelgrid-installed-$(echo "$extras" | tr ',' '-')"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing modelgrid[$extras] into .venv"
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar on -e ".[$extras]" \
    2>&1 | sed -u -E '/^(Requirement already satisfied|  Using cached|  Downloading .*metadata)/d'
  .venv/bin/python -c "import modelgrid" >/dev/null
  echo "$want" > "$stamp"
fi
if $embedded && ! .venv/bin/python scripts/llama_build.py checked; then
  echo "==> checking the llama.cpp build: one token in a child process"
  rc=0
  .venv/bin/modelgrid models check || rc=$?
  if [ "$rc" -eq 3 ]; then
    echo "==> that build does not run on this machine: rebuilding with the safest instruction set (AVX2)"
    .venv/bin/python scripts/llama_build.py ensure --level avx2
    .venv/bin/modelgrid models check
  elif [ "$rc" -ne 0 ]; then
    exit "$rc"
  fi
  .venv/bin/python scripts/llama_build.py mark-checked
fi
