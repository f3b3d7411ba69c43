"""What the front ends cost: `datasets` (score_dataset) and Ray Data (one actor) throughput as
a fraction of the bare scorer's, on the same ~1 MP JPEG files and scorer settings, in one run.

    python benchmarks/bench_overhead.py --images 16 --config bf16:4

Bare: `scorer.score_images(paths)`. datasets: `score_dataset` over a path column read
undecoded, in this process. Ray: `read_binary_files` -> `score_ray_dataset` (one actor) on a
local cluster; its actor loads the model when the job starts, so the steady-state rate is
taken from the first output batch to the last (the end-to-end time, with the start-up, is
printed beside it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scorer import make_jpegs, parse_config  # noqa: E402
from datasets import Dataset, Image  # noqa: E402

from curate import DeepfakeScorer, score_dataset  # noqa: E402
from curate.testing import build_random_checkpoint  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", default="1152x864")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--config", default="bf16:4", help="scorer config (see bench_scorer.py)")
    ap.add_argument("--checkpoint", default=None, help="full-size checkpoint dir (built if absent)")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="curate-overhead-"))
    ckpt = args.checkpoint or str(work / "full")
    if not (Path(ckpt) / "model.safetensors").exists():
        build_random_checkpoint(ckpt, full_size=True)
    w, h = (int(x) for x in args.size.lower().split("x"))
    (work / "jpegs").mkdir()
    paths = make_jpegs(work / "jpegs", args.images, (w, h))
    _, kw = parse_config(args.config)
    n = len(paths)

    scorer = DeepfakeScorer(ckpt, device=args.device, **kw)
    scorer.score_images(paths[: scorer.chunk_size()])  # load + warm-up
    t = time.perf_counter()
    scorer.score_images(paths)
    bare = n / (time.perf_counter() - t)

    ds = Dataset.from_dict({"image": paths}).cast_column("image", Image(decode=False))
    t = time.perf_counter()
    score_dataset(ds, scorer, map_batch_size=4 * scorer.chunk_size())
    hf = n / (time.perf_counter() - t)

    import ray

    from curate.integrations.ray import score_ray_dataset

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rds = ray.data.read_binary_files(paths, include_paths=True)
    stage = DeepfakeScorer(ckpt, device=args.device, image_column="bytes", **kw)
    batch = scorer.chunk_size()
    scored = score_ray_dataset(rds, stage, concurrency=1, batch_size=batch)
    t0 = time.perf_counter()
    stamps = []
    for b in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
        stamps.append((time.perf_counter(), b.num_rows))
    ray_e2e = n / (time.perf_counter() - t0)
    steady_rows = n - stamps[0][1]
    ray_rate = steady_rows / (stamps[-1][0] - stamps[0][0]) if steady_rows else float("nan")
    ray.shutdown()

    print(f"{n} JPEGs of {w}x{h}, scorer {args.config} on {args.device}")
    print(f"bare scorer            {bare:7.2f} img/s   100.0%")
    print(f"datasets score_dataset {hf:7.2f} img/s   {hf / bare:6.1%}")
    print(f"Ray Data, 1 actor      {ray_rate:7.2f} img/s   {ray_rate / bare:6.1%}   "
          f"(end to end with actor start-up: {ray_e2e:.2f} img/s)")  # fmt: skip
    return {"bare": bare, "datasets": hf, "ray": ray_rate, "ray_end_to_end": ray_e2e}


if __name__ == "__main__":
    sys.exit(main() and 0)
