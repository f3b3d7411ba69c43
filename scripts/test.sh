#!/usr/bin/env bash
# Set up the test environment and run the whole suite offline. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 FIFTYONE_DO_NOT_TRACK=true RAY_USAGE_STATS_ENABLED=0
ruff check curate tests plugins benchmarks examples scripts
ruff format --check curate tests plugins benchmarks examples scripts
# The manual (docs/, mkdocs.yml): strict, so a broken link or a stale API name fails here.
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"
python -m pytest -q -ra "$@"
