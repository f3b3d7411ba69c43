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
# Per-image scores (the image column holds the embedded file bytes; show its path).
python - <<'PY'
import pyarrow.parquet as pq
t = pq.read_table("scored.parquet").to_pylist()
for r in t:
    p = "-" if r["fake_prob"] is None else f"{r['fake_prob']:.4f}"
    print(f"{r['image']['path']:<28} fake_prob {p:<8} {r['deepfake_label'] or r['deepfake_error']}")
PY
curate filter scored.parquet -o kept.parquet --removed removed.parquet --threshold 0.5 --overwrite
