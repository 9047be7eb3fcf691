#!/usr/bin/env bash
# The main job: set up everything on a fresh machine and serve on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh embedded,embeddings
exec .venv/bin/modelgrid serve "$@"
