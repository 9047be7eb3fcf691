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
echo "==> pytest (SQLite, PostgreSQL-only tests, Redis, the real models)"
.venv/bin/python -m pytest
echo "==> pytest again on PostgreSQL: the API and CLI tests (MODELGRID_TEST_DATABASE=postgres)"
MODELGRID_TEST_DATABASE=postgres exec .venv/bin/python -m pytest tests/api tests/cli
