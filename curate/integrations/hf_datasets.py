"""`score_dataset`: one call that runs `DeepfakeScorer` over a Hugging Face `datasets.Dataset`
or a streamed `IterableDataset`; `write_parquet_shards`: a stream, scored, into Parquet shards.

Streaming, end to end (nothing is downloaded whole, memory stays flat)::

    ds = load_dataset("webdataset", data_files="shards/*.tar", split="train", streaming=True)
    scorer = DeepfakeScorer(image_column="jpg")
    scored = score_dataset(ds, scorer)  # lazy: scores as it is read
    write_parquet_shards(scored, "scored/", rows_per_shard=10_000, metadata=scorer.metadata())
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
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

    An `IterableDataset` (`load_dataset(..., streaming=True)`) comes back as one too, scored
    lazily as it is iterated, in this process (`num_proc` / `num_gpus` need a `Dataset`; give
    each process its part with `datasets.distributed.split_dataset_by_node`).

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
    from datasets import Image, IterableDataset

    scorer = scorer or DeepfakeScorer(**scorer_kwargs)
    column = scorer.image_column
    names = dataset.column_names  # None: a stream whose columns are not declared
    if names is not None and column not in names:
        raise ValueError(
            f"image column {column!r} not found; the dataset has {names}. Pass image_column=..."
        )
    if isinstance(dataset, IterableDataset):
        if num_proc or num_gpus:
            raise ValueError(
                "num_proc / num_gpus need a Dataset: a streamed IterableDataset is scored in "
                "this process (give each process its part with "
                "datasets.distributed.split_dataset_by_node)"
            )
        return _score_stream(dataset, scorer, map_batch_size)
    if num_gpus is not None:
        _check_gpus(num_gpus, num_proc, scorer)
        num_proc = num_gpus if num_gpus > 1 else None
    feature = dataset.features[column]
    undecoded = isinstance(feature, Image) and feature.decode
    if undecoded:
        dataset = dataset.cast_column(column, Image(decode=False))
    features = dataset.features.copy()
    features.update(scorer.features)
    with _start_method((start_method or "spawn") if num_proc and num_proc > 1 else None):
        scored = dataset.map(
            scorer,
            batched=True,
            batch_size=_map_batch_size(scorer, map_batch_size),
            with_rank=True,
            num_proc=num_proc,
            features=features,
            desc=desc,
        )
    if undecoded:
        scored = scored.cast_column(column, feature)
    return scored


def _map_batch_size(scorer: DeepfakeScorer, map_batch_size: int | None) -> int:
    chunk = scorer.batch_size if isinstance(scorer.batch_size, int) else 64
    return map_batch_size or max(chunk * 8, 64)


def _score_stream(dataset, scorer: DeepfakeScorer, map_batch_size: int | None):
    """`score_dataset` for an `IterableDataset`: a lazy batched map with the image column
    undecoded (the scorer decodes, so a corrupt image is a row with a reason, not an error in
    the loader), then the features declared: the source's (the image feature as it was) and
    the score columns', so whatever writes the stream out types them by the contract."""
    from datasets import Image

    column = scorer.image_column
    features = dataset.features
    feature = features.get(column) if features is not None else None
    if isinstance(feature, Image) and feature.decode:
        dataset = dataset.cast_column(column, Image(decode=False))
    scored = dataset.map(scorer, batched=True, batch_size=_map_batch_size(scorer, map_batch_size))
    if features is None:
        return scored
    features = features.copy()
    features.update(scorer.features)
    # A cast, not map(features=...): datasets ignores later casts of a stream mapped with them.
    return scored.cast(features)


def write_parquet_shards(
    dataset,
    folder: str | os.PathLike,
    *,
    rows_per_shard: int = 10_000,
    image_column: str | None = None,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
    batch_size: int = 100,
) -> list[str]:
    """Write `dataset` (a `Dataset` or a streamed `IterableDataset`, scored or not) as it is
    read into `folder/00000.parquet`, `00001.parquet`, ... of `rows_per_shard` rows each.

    Each shard is written atomically (`curate.io.parquet.write_parquet`: images embedded as
    `struct<bytes, path>`, the features and `metadata` — say `scorer.metadata()` — in its
    schema), so a stream that stops leaves only whole shards. `image_column` defaults to the
    dataset's only `Image` column; its bytes are copied as read, never re-encoded. Returns the
    paths written."""
    from datasets import Image

    from curate.io.parquet import write_parquet

    if rows_per_shard < 1:
        raise ValueError(f"rows_per_shard must be at least 1, got {rows_per_shard}")
    features = dataset.features
    if image_column is None and features is not None:
        images = [n for n, f in features.items() if isinstance(f, Image)]
        image_column = images[0] if len(images) == 1 else None
    if features is not None and isinstance(features.get(image_column), Image):
        dataset = dataset.cast_column(image_column, Image(decode=False))
        features = dataset.features
    os.makedirs(folder, exist_ok=True)
    rows = _rows_in_shards(dataset.iter(batch_size=min(batch_size, rows_per_shard)), rows_per_shard)
    paths = []
    for index, shard in enumerate(rows):
        path = os.path.join(folder, f"{index:05d}.parquet")
        write_parquet(
            shard,
            path,
            image_column=image_column,
            metadata=metadata,
            overwrite=overwrite,
            features=features,
        )
        paths.append(path)
    return paths


def _rows_in_shards(batches: Iterator[dict], size: int) -> Iterator[Iterator[dict]]:
    """`batches` (dicts of column lists) regrouped into runs of exactly `size` rows (the last
    run shorter), each run an iterator of batches consumed before the next run starts."""
    pending: list[dict] = []  # the part of a batch that belongs to the next run

    def run() -> Iterator[dict]:
        n = 0
        while n < size:
            batch = pending.pop() if pending else next(batches, None)
            if batch is None:
                return
            rows = len(next(iter(batch.values())))
            if n + rows > size:
                cut = size - n
                pending.append({k: v[cut:] for k, v in batch.items()})
                batch = {k: v[:cut] for k, v in batch.items()}
                rows = cut
            n += rows
            yield batch

    while True:
        if not pending:
            first = next(batches, None)
            if first is None:
                return
            pending.append(first)
        yield run()
