"""A pipeline author's run: score a `datasets.Dataset`, drop what is synthetic, write Parquet.

    python examples/datasets_pipeline.py examples/images kept.parquet --threshold 0.5

Uses $CURATE_MODEL (or --model) for the detector; see the README's quick start.
"""

from __future__ import annotations

import argparse

from datasets import Image, load_dataset

from curate import DeepfakeScorer, score_dataset
from curate.filtering import DecisionRule, filter_synthetic
from curate.io.parquet import write_parquet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", help="a folder of images (read with the `imagefolder` builder)")
    parser.add_argument("output", help="Parquet file for the kept images")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--model", default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    ds = load_dataset("imagefolder", data_dir=args.images, split="train")
    scorer = DeepfakeScorer(model=args.model, batch_size=16)
    scored = score_dataset(ds, scorer)  # adds fake_prob, real_prob, deepfake_label, deepfake_error

    rule = DecisionRule(threshold=args.threshold)
    split = filter_synthetic(scored, rule)
    print(
        f"kept {split.kept.num_rows}, removed {split.removed.num_rows}, "
        f"unscored {split.unscored.num_rows} of {scored.num_rows} images"
    )

    # Undecoded, the image column is {"bytes", "path"}: written as-is, no decode + re-encode.
    kept = split.kept.cast_column("image", Image(decode=False))
    rows = write_parquet(
        kept.iter(batch_size=64),
        args.output,
        metadata=scorer.metadata(**rule.to_metadata()),
        overwrite=args.overwrite,
    )
    print(f"wrote {rows} rows to {args.output}")


if __name__ == "__main__":
    main()
