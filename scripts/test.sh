#!/usr/bin/env bash
# Run every check and the whole test suite (sets itself up on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh embedded,embeddings,test
echo "==> ruff"
.venv/bin/ruff check src tests bench
# mypy takes half a minute of one core; it runs beside the services and pytest (whose waits
# leave a core idle much of the time) and its verdict is printed, and counted, at the end.
echo "==> mypy --strict src (in the background; its output comes at the end)"
mypy_log="$(mktemp)"
.venv/bin/mypy --strict src >"$mypy_log" 2>&1 &
mypy_pid=$!
trap 'kill "$mypy_pid" 2>/dev/null || true' EXIT  # a step failing below ends it too
echo "==> import contracts"
.venv/bin/lint-imports --no-cache
scripts/services.sh
# pgvector for the PostgreSQL knowledge index (built from Debian's source package when missing
# and we are root; otherwise that index keeps bytea vectors and says how to install it).
scripts/pgvector.sh
# The console's browser tests drive Debian's Chromium through Playwright (never Playwright's
# own browser download). Installed here when missing and we are root; otherwise those tests
# skip, saying how to install it (under CI=true they fail instead).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian's chromium (the console's browser tests)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
  else
    echo "==> chromium is missing and this is not root: the console's browser tests will skip (install it: sudo apt-get install -y chromium)"
  fi
fi
echo "==> preparing the embedded model"
.venv/bin/modelgrid models prepare
rc=0
if [ $# -gt 0 ]; then  # a selection: run just that
  .venv/bin/python -m pytest "$@" || rc=$?
else
  echo "==> pytest, a worker per core and one more (SQLite; PostgreSQL where the SQL differs; Redis; the real models)"
  .venv/bin/python -m pytest -n auto --dist loadgroup || rc=$?
fi
echo "==> mypy --strict src"
mypy_rc=0
wait "$mypy_pid" || mypy_rc=$?
cat "$mypy_log"
rm -f "$mypy_log"
if [ "$rc" -eq 0 ]; then rc=$mypy_rc; fi
exit "$rc"
