"""Per-image cost of the provenance checks next to the detector (CPU).

    python benchmarks/provenance_cost.py [--repeat 20] [--score-images 8]

Measures, on the example photos at their own size and upscaled to 1024x1024 (PNG and JPEG):
the metadata + C2PA check (bytes only), the opt-in watermark check (one full decode), and the
scorer on a full-size random-weight detector (the real model's cost), one thread each; and the
watermark check's false positives on these real photos.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

from curate import DeepfakeScorer, schema
from curate.provenance import ProvenanceChecker
from curate.testing import build_random_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def _files(d: Path) -> list[str]:
    out = []
    for p in sorted(EXAMPLES.glob("*.[jp]*g")):
        img = Image.open(p).convert("RGB")
        for size, fmt in ((img.size, "JPEG"), ((1024, 1024), "JPEG"), ((1024, 1024), "PNG")):
            buf = io.BytesIO()
            img.resize(size).save(buf, fmt, quality=92)
            path = d / f"{p.stem}_{size[0]}x{size[1]}.{fmt.lower()}"
            path.write_bytes(buf.getvalue())
            out.append(str(path))
    return out


def _per_image(fn, files: list[str], repeat: int) -> float:
    fn(files[0])  # warm-up: imports, c2pa context
    start = time.perf_counter()
    for _ in range(repeat):
        for f in files:
            fn(f)
    return (time.perf_counter() - start) / (repeat * len(files)) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--score-images", type=int, default=8)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        files = _files(Path(tmp))
        meta = _per_image(ProvenanceChecker().check, files, args.repeat)
        wm = _per_image(ProvenanceChecker(watermark=True).check, files, max(1, args.repeat // 10))
        marked = ProvenanceChecker(watermark=True).check_many(files)
        flagged = sum(bool(s) for s in marked[schema.PROVENANCE_STRONG])
        highest = max(r for r in marked[schema.PROVENANCE_WATERMARK] if r is not None)
        ckpt = build_random_checkpoint(os.path.join(tmp, "full"), full_size=True)
        scorer = DeepfakeScorer(ckpt, device="cpu", dtype="float32", batch_size=1, num_workers=1)
        scorer.load()
        batch = files[: args.score_images]
        scorer.score_images(batch[:1])
        start = time.perf_counter()
        scorer.score_images(batch)
        score = (time.perf_counter() - start) / len(batch) * 1000
    print(f"images: {len(files)} ({len(files) // 3} photos x own size JPEG, 1024 JPEG, 1024 PNG)")
    print(f"metadata + C2PA check : {meta:8.2f} ms/image")
    print(f"  + watermark check   : {wm:8.2f} ms/image")
    print(f"scorer (full-size, fp32, 1 thread): {score:8.1f} ms/image")
    print(f"metadata check / scorer: {meta / score:.2%}; with watermark: {wm / score:.2%}")
    print(
        f"watermark false positives on these real photos: {flagged}/{len(files)} "
        f"(highest match rate {highest:.2f})"
    )


if __name__ == "__main__":
    main()
