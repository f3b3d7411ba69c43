"""WebDataset shards at scale: peak memory flat in the number of shards, and throughput on
shards equal to throughput on a folder of the same images.

    python benchmarks/bench_shards.py --shards 2 --per-shard 64

Memory: `ShardedScoringRun` scores N shards, then 10N shards, each run in a fresh process
that reports its own peak RSS (`ru_maxrss`); the target is 10N within ~10 % of N. Throughput:
the same N x per-shard JPEGs scored from the shards (`ShardedScoringRun`) and from a folder
(`ScoringRun`), same scorer, model loaded before the clock starts, alternated `--repeats`
times; the best of each is reported. Tiny random model by default (the decode and I/O
dominated case, where a slower reader would show); `--checkpoint` for another one.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from curate.testing import build_random_checkpoint  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def make_shards(folder: Path, shards: int, per_shard: int, size: tuple[int, int]) -> list[Path]:
    """`shards` tar shards of `per_shard` samples (JPEG + JSON + caption) as img2dataset
    writes them, and the same JPEGs in `folder/images/`; the photos are varied by a crop."""
    import webdataset as wds

    photos = [Image.open(p).convert("RGB") for p in sorted(EXAMPLES.glob("*.jpg"))]
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        path = folder / "shards" / f"{s:05d}.tar"
        path.parent.mkdir(parents=True, exist_ok=True)
        with wds.TarWriter(str(path)) as sink:
            for i in range(per_shard):
                photo = photos[(s * per_shard + i) % len(photos)]
                x, y = rng.integers(0, 64, 2)
                crop = photo.crop((x, y, photo.width - 64 + x, photo.height - 64 + y)).resize(size)
                buf = io.BytesIO()
                crop.save(buf, "JPEG", quality=90)
                key = f"{s:05d}{i:05d}"
                (folder / "images" / f"{key}.jpg").write_bytes(buf.getvalue())
                sink.write({"__key__": key, "jpg": buf.getvalue(), "json": json.dumps({"k": key})})
        paths.append(path)
    return paths


_PEAK = """
import json, resource, sys, time
from curate import DeepfakeScorer
from curate.runs import ShardedScoringRun
from curate.sources import resolve_source
pattern, out, model, batch = sys.argv[1:5]
scorer = DeepfakeScorer(model=model, batch_size=int(batch))
scorer.load()
start = time.perf_counter()
rows = ShardedScoringRun(resolve_source(pattern), scorer, out).run()
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - start,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_rss(pattern: str, out: Path, model: str, batch: int) -> dict:
    """Score `pattern` into `out` in a fresh process; its rows, seconds and peak RSS."""
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK, pattern, str(out), model, str(batch)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def throughput(work: Path, model: str, batch: int, repeats: int) -> dict:
    """Images per second from the shards and from the folder, best of `repeats` each."""
    from curate import DeepfakeScorer
    from curate.runs import ScoringRun, ShardedScoringRun
    from curate.sources import resolve_source

    scorer = DeepfakeScorer(model=model, batch_size=batch)
    scorer.load()
    best = {"shards": 0.0, "folder": 0.0}
    for r in range(repeats):
        for kind in ("shards", "folder"):
            source = resolve_source(str(work / ("shards" if kind == "shards" else "images")))
            out = work / f"tp-{kind}-{r}"
            start = time.perf_counter()
            if kind == "shards":
                rows = ShardedScoringRun(source, scorer, out).run()
            else:
                rows = ScoringRun(source, scorer, str(out) + ".parquet").run()
            best[kind] = max(best[kind], rows / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shards", type=int, default=2, help="N (the memory run also does 10N)")
    ap.add_argument("--per-shard", type=int, default=64)
    ap.add_argument("--size", default="512x384")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--checkpoint", default=None, help="model dir (default: a tiny random one)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="curate-shards-"))
    model = args.checkpoint or build_random_checkpoint(work / "tiny")
    w, h = (int(x) for x in args.size.lower().split("x"))
    many = args.shards * 10
    make_shards(work / "many", many, args.per_shard, (w, h))
    n_pattern = str(work / "many" / "shards" / f"{{00000..{args.shards - 1:05d}}}.tar")
    small = peak_rss(n_pattern, work / "out-n", model, args.batch_size)
    large = peak_rss(str(work / "many" / "shards"), work / "out-10n", model, args.batch_size)
    few = work / "few"
    make_shards(few, args.shards, args.per_shard, (w, h))
    rates = throughput(few, model, args.batch_size, args.repeats)
    result = {
        "N": args.shards,
        "per_shard": args.per_shard,
        "peak_rss_mib": {"N": small["peak_rss_mib"], "10N": large["peak_rss_mib"]},
        "rss_growth": large["peak_rss_mib"] / small["peak_rss_mib"] - 1,
        "images_per_s": rates,
        "shards_vs_folder": rates["shards"] / rates["folder"],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
