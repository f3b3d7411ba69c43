"""The FiftyOne operator's throughput as a fraction of the bare scorer's, on the same files.

One run, same process, same files, same settings: the bare `DeepfakeScorer.score_images`
over the file paths, then `detect_deepfakes` through `fiftyone.operators.execute_operator`
(reading paths from the dataset and writing `fake_prob` / `deepfake` / `deepfake_error` back
every chunk), alternating, best of `--repeats`. Both include building the scorer and loading
the model, i.e. what a user waits for. Needs a FiftyOne database: a temporary one, unless
FIFTYONE_DATABASE_URI names one (FiftyOne joins the database service of any other FiftyOne
process on the machine, so on a shared machine give it a `mongod` of its own).

    python benchmarks/bench_fiftyone.py                           # tiny model: the harsh case
    python benchmarks/bench_fiftyone.py --images 48 --full-size    # the real model's cost
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int, size: tuple[int, int]) -> list[str]:
    """`n` distinct JPEGs of `size` cut from the example photos (typical camera-like files)."""
    from PIL import Image, ImageOps

    photos = sorted(p for p in (REPO / "examples" / "images").iterdir() if p.suffix == ".jpg")
    out = []
    for i in range(n):
        img = Image.open(photos[i % len(photos)]).convert("RGB")
        img = ImageOps.fit(img, size, centering=((i * 0.13) % 1, (i * 0.29) % 1))
        if i % 2:
            img = ImageOps.mirror(img)
        path = folder / f"img_{i:05d}.jpg"
        img.save(path, quality=90)
        out.append(str(path))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--size", default="1024x768", help="image size WxH (default 1024x768)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full-size", action="store_true", help="full-size random model (93.5 M)")
    ap.add_argument("--model", help="a checkpoint to use instead of a random one")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="curate-bench-fo-"))
    os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(work / "db"))
    os.environ["FIFTYONE_PLUGINS_DIR"] = str(REPO / "plugins")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import fiftyone as fo
    import fiftyone.operators as foo
    import torch

    from curate import DeepfakeScorer
    from curate.testing import build_random_checkpoint

    model = args.model or build_random_checkpoint(
        work / "ckpt", classifier_scale=4.0, full_size=args.full_size
    )
    w, h = (int(v) for v in args.size.lower().split("x"))
    (work / "images").mkdir()
    paths = make_images(work / "images", args.images, (w, h))
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=p) for p in paths])
    fields = ["fake_prob", "deepfake", "deepfake_error"]

    def bare() -> float:
        t = time.perf_counter()
        DeepfakeScorer(model, device=args.device, batch_size=args.batch_size).score_images(paths)
        return time.perf_counter() - t

    def operator() -> float:
        for f in fields:
            if ds.has_sample_field(f):
                ds.delete_sample_field(f)
        t = time.perf_counter()
        foo.execute_operator(
            "@curate/deepfakes/detect_deepfakes",
            {
                "dataset": ds,
                "params": {"model": model, "batch_size": args.batch_size, "device": args.device},
            },
        )
        took = time.perf_counter() - t
        assert ds.exists("fake_prob").count() == len(paths)
        return took

    # warm-up: file cache, thread pools, first-call costs of both paths
    DeepfakeScorer(model, device=args.device).score_images(paths[: args.batch_size])
    bare_s, op_s = [], []
    for _ in range(args.repeats):
        bare_s.append(bare())
        op_s.append(operator())
    b, o = len(paths) / min(bare_s), len(paths) / min(op_s)
    print(
        f"{len(paths)} JPEGs {w}x{h}, {'full-size' if args.full_size else 'tiny'} model, "
        f"batch {args.batch_size}, device {args.device}, torch threads {torch.get_num_threads()}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(f"bare scorer:   {b:8.1f} images/s  (runs: {', '.join(f'{x:.2f}s' for x in bare_s)})")
    print(f"operator:      {o:8.1f} images/s  (runs: {', '.join(f'{x:.2f}s' for x in op_s)})")
    # Each operator run follows a bare run on the same files: on a shared machine, the ratio
    # within a pair sees the same background load, so its median is the steadier figure.
    pairs = statistics.median(bt / ot for bt, ot in zip(bare_s, op_s, strict=True))
    print(f"operator / bare: {o / b:.1%} (best runs), {pairs:.1%} (median of run pairs)")
    ds.delete()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
