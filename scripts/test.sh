#!/usr/bin/env bash
# Run every check and the whole test suite (sets itself up on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh embedded,embeddings,test
echo "==> ruff"
.venv/bin/ruff check src tests bench
echo "==> import contracts"
.venv/bin/lint-imports --no-cache
scripts/services.sh
echo "==> preparing the embedded model"
.venv/bin/modelgrid models prepare
echo "==> pytest"
exec .venv/bin/python -m pytest "$@"
