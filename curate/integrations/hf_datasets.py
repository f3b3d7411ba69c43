"""`score_dataset`: one call that runs `DeepfakeScorer` over a Hugging Face `datasets.Dataset`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from curate.scorer import DeepfakeScorer


@contextlib.contextmanager
def _start_method(method: str | None) -> Iterator[None]:
    """Make `datasets`' worker pool (`multiprocess`) start its processes with `method`, and
    put the global setting back afterwards."""
    if method is None:
        yield
        return
    import multiprocess

    previous = multiprocess.get_start_method(allow_none=True)
    multiprocess.set_start_method(method, force=True)
    try:
        yield
    finally:
        multiprocess.set_start_method(previous, force=True)


def _check_gpus(num_gpus: int, num_proc: int | None, scorer: DeepfakeScorer) -> None:
    import torch

    if num_gpus < 1:
        raise ValueError(f"num_gpus must be at least 1, got {num_gpus}")
    if num_proc not in (None, num_gpus):
        raise ValueError(f"num_proc={num_proc} and num_gpus={num_gpus}: one process per GPU")
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if num_gpus > available:
        raise ValueError(f"num_gpus={num_gpus} but this machine has {available} CUDA GPU(s)")
    if str(scorer.device or "auto") not in ("auto", "cuda"):
        raise ValueError(
            f"num_gpus puts worker k on cuda:k; the scorer's device={scorer.device!r} would "
            "override it (use device='auto' or 'cuda')"
        )


def score_dataset(
    dataset,
    scorer: DeepfakeScorer | None = None,
    *,
    num_proc: int | None = None,
    num_gpus: int | None = None,
    start_method: str | None = None,
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

    Workers start with `start_method` ("spawn" by default, "fork" or "forkserver"). Spawned
    workers import torch afresh (a few seconds each) but inherit nothing: no CUDA context
    (the "Cannot re-initialize CUDA in forked subprocess" error) and no used CPU thread
    pool, which a forked worker can only run with one thread (see `curate.scorer`).
    `num_gpus=N` runs N workers, worker k on `cuda:k`.
    """
    from datasets import Image

    scorer = scorer or DeepfakeScorer(**scorer_kwargs)
    column = scorer.image_column
    if column not in dataset.column_names:
        raise ValueError(
            f"image column {column!r} not found; the dataset has {dataset.column_names}. "
            "Pass image_column=..."
        )
    if num_gpus is not None:
        _check_gpus(num_gpus, num_proc, scorer)
        num_proc = num_gpus if num_gpus > 1 else None
    feature = dataset.features[column]
    undecoded = isinstance(feature, Image) and feature.decode
    if undecoded:
        dataset = dataset.cast_column(column, Image(decode=False))
    features = dataset.features.copy()
    features.update(scorer.features)
    chunk = scorer.batch_size if isinstance(scorer.batch_size, int) else 64
    with _start_method((start_method or "spawn") if num_proc and num_proc > 1 else None):
        scored = dataset.map(
            scorer,
            batched=True,
            batch_size=map_batch_size or max(chunk * 8, 64),
            with_rank=True,
            num_proc=num_proc,
            features=features,
            desc=desc,
        )
    if undecoded:
        scored = scored.cast_column(column, feature)
    return scored
