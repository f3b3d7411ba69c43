#!/usr/bin/env bash
# The main job for a new user: set up, score examples/images, filter, show the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh base
# shellcheck disable=SC1091
. .venv/bin/activate
CURATE_MODEL=$(python scripts/demo_model.py)
export CURATE_MODEL
curate score examples/images -o scored.parquet --overwrite
curate filter scored.parquet -o kept.parquet --removed removed.parquet --threshold 0.5 --overwrite
