"""A FiftyOne user's run, from Python: build a dataset from a folder, score it with the
`detect_deepfakes` operator, look at what is synthetic, tag it, export the rest to Parquet.

    FIFTYONE_PLUGINS_DIR=$PWD/plugins python examples/fiftyone_example.py examples/images kept.parquet

Uses $CURATE_MODEL (or --model) for the detector; see the README's quick start. Add --app to
open the FiftyOne App on the scored dataset afterwards.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Before fiftyone is imported: it reads its plugin directory once.
os.environ.setdefault("FIFTYONE_PLUGINS_DIR", str(Path(__file__).resolve().parents[1] / "plugins"))

import fiftyone as fo  # noqa: E402
import fiftyone.operators as foo  # noqa: E402
from fiftyone import ViewField as F  # noqa: E402

DETECT = "@curate/deepfakes/detect_deepfakes"
ACT = "@curate/deepfakes/apply_deepfake_threshold"
EXPORT = "@curate/deepfakes/export_parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", help="a folder of images")
    parser.add_argument("output", help="Parquet file for the kept images")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--model", default=None, help="Hub id or local dir ($CURATE_MODEL)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--app", action="store_true", help="open the FiftyOne App at the end")
    args = parser.parse_args()

    dataset = fo.Dataset.from_images_dir(args.images, recursive=True)

    # 1. Score every sample: fake_prob (float), deepfake (Classification), deepfake_error.
    detect = foo.get_operator(DETECT)
    detect(dataset, model=args.model, batch_size=args.batch_size)

    # 2. Filter. MongoDB orders null below every number, so a bare F("fake_prob") < t would
    #    also match the images that could not be read: ask for a score explicitly.
    t = args.threshold
    scored = F("fake_prob").exists()
    kept = dataset.match(scored & (F("fake_prob") < t))
    synthetic = dataset.match(F("fake_prob") >= t)
    unreadable = dataset.match(~scored)
    print(
        f"{len(dataset)} images: {len(kept)} kept, {len(synthetic)} synthetic (fake_prob >= {t}), "
        f"{len(unreadable)} unreadable"
    )
    for sample in synthetic.sort_by("fake_prob", reverse=True).limit(5):
        print(f"  {sample.fake_prob:.3f}  {sample.filepath}")
    for path, error in zip(*unreadable.values(["filepath", "deepfake_error"]), strict=True):
        print(f"  unreadable: {path}: {error}")

    # 3. Tag what is synthetic (non-destructive) and what falls in a review band.
    act = foo.get_operator(ACT)
    band = (max(0.0, t - 0.2), min(1.0, t + 0.2))
    act(dataset, threshold=t, review_band=band)
    print("tags:", dataset.count_sample_tags())

    # 4. Export the kept images, bytes embedded, scores and settings in the file.
    export = foo.get_operator(EXPORT)
    result = export(dataset, args.output, threshold=t, overwrite=args.overwrite)
    print(f"wrote {result.result['rows']} rows to {args.output}")

    if args.app:
        session = fo.launch_app(dataset)
        session.wait()


if __name__ == "__main__":
    main()
