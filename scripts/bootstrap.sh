#!/usr/bin/env bash
# Create .venv and install modelgrid with the given extras, once per change of pyproject.toml.
# Usage: scripts/bootstrap.sh EXTRAS   (e.g. "embedded,embeddings" or "embedded,embeddings,test")
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-embedded,embeddings}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating virtual environment in .venv"
  "$py" -m venv .venv
fi
stamp=".venv/.modelgrid-installed-$(echo "$extras" | tr ',' '-')"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "==> installing modelgrid[$extras] into .venv"
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "    llama-cpp-python 0.3.36 has no wheel on PyPI: it compiles from source now"
  echo "    (about 6 minutes on 2 cores; pip reports 'still running...' while it builds)."
fi
.venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar on -e ".[$extras]" \
  2>&1 | sed -u -E '/^(Requirement already satisfied|  Using cached|  Downloading .*metadata)/d'
.venv/bin/python -c "import modelgrid" >/dev/null
echo "$want" > "$stamp"
