#!/usr/bin/env bash
# Run every check and the whole test suite (sets itself up on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh embedded,embeddings,test
echo "==> ruff"
.venv/bin/ruff check src tests bench
echo "==> mypy --strict src"
.venv/bin/mypy --strict src
echo "==> import contracts"
.venv/bin/lint-imports --no-cache
scripts/services.sh
echo "==> preparing the embedded model"
.venv/bin/modelgrid models prepare
if [ $# -gt 0 ]; then  # a selection: run just that
  exec .venv/bin/python -m pytest "$@"
fi
echo "==> pytest on every core (SQLite; PostgreSQL where the SQL differs; Redis; the real models)"
exec .venv/bin/python -m pytest -n auto --dist loadgroup
