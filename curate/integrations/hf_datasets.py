"""`score_dataset`: one call that runs `DeepfakeScorer` over a Hugging Face `datasets.Dataset`."""

from __future__ import annotations

from typing import Any

from curate.scorer import DeepfakeScorer


def score_dataset(
    dataset,
    scorer: DeepfakeScorer | None = None,
    *,
    num_proc: int | None = None,
    map_batch_size: int | None = None,
    desc: str = "Scoring images",
    **scorer_kwargs: Any,
):
    """Return `dataset` with the score columns added (`fake_prob`, `real_prob`,
    `deepfake_label`, `deepfake_error`).

    An `Image()` column is read undecoded (`decode=False`) during the map, so the scorer's
    own threads decode the bytes and `datasets` never decodes or rewrites the images; the
    column's feature is restored afterwards. The map runs `with_rank=True`, so with
    `num_proc` each worker loads its own copy of the model (worker k on GPU k when there are
    GPUs). Results are cached by `datasets` like any map: a re-run with the same scorer
    settings reuses them.
    """
    from datasets import Image

    scorer = scorer or DeepfakeScorer(**scorer_kwargs)
    column = scorer.image_column
    if column not in dataset.column_names:
        raise ValueError(
            f"image column {column!r} not found; the dataset has {dataset.column_names}. "
            "Pass image_column=..."
        )
    feature = dataset.features[column]
    undecoded = isinstance(feature, Image) and feature.decode
    if undecoded:
        dataset = dataset.cast_column(column, Image(decode=False))
    features = dataset.features.copy()
    features.update(scorer.features)
    scored = dataset.map(
        scorer,
        batched=True,
        batch_size=map_batch_size or max(scorer.batch_size * 8, 64),
        with_rank=True,
        num_proc=num_proc,
        features=features,
        desc=desc,
    )
    if undecoded:
        scored = scored.cast_column(column, feature)
    return scored
