"""Ray Data: the one `DeepfakeScorer` as a `map_batches` stage, one actor per GPU.

    import ray
    from curate.integrations.ray import RayDeepfakeScorer

    ds = ray.data.read_images("s3://bucket/images/", include_paths=True)  # or read_binary_files,
    ds = ds.map_batches(                                                    # or read_parquet
        RayDeepfakeScorer,
        fn_constructor_kwargs={"model": "prithivMLmods/open-deepfake-detection"},
        batch_format="pyarrow", batch_size=256, concurrency=4, num_gpus=1,
    )

`RayDeepfakeScorer` is `DeepfakeScorer` returning the whole batch with the score columns added
(Ray replaces a batch with what the stage returns). It reads the image forms each Ray reader
gives: numpy arrays (`read_images`), encoded bytes (`read_binary_files`, paired with its
`path` column so errors name the file) and Hugging Face `{"bytes", "path"}` structs
(`read_parquet` of a `datasets` export). `score_ray_dataset` wraps that call;
`write_scored_parquet` writes the result in the project's Parquet schema. `read_source` reads
any curate SOURCE through `curate.sources` (Ray's tasks read the very rows a local run reads),
and `score_files`, what `curate score --engine ray` runs, writes the file a local run writes.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from curate.scorer import DeepfakeScorer
from curate.sources import Source

logger = logging.getLogger(__name__)


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError(
            "Ray Data is not installed: pip install 'curate[ray]' (ray[data])"
        ) from None
    return ray


def _as_table(batch: Any) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    from ray.data.block import BlockAccessor

    # A dict of numpy arrays or a pandas DataFrame: Ray's own conversion keeps its tensor
    # columns (read_images) as Ray tensor extension arrays.
    return BlockAccessor.batch_to_block(batch)


def _squeeze(item: Any) -> Any:
    # Ray's variable-shape tensor column stores a greyscale image (H, W) among colour ones
    # (H, W, 3) as (1, H, W); a leading singleton is never a channels-first colour image.
    grey = isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[0] == 1
    return item[0] if grey and item.shape[-1] not in (1, 3, 4) else item


class RayDeepfakeScorer(DeepfakeScorer):
    """`DeepfakeScorer` for `ray.data.Dataset.map_batches`: the batch comes back whole, with
    the score columns (typed float32 / string, nulls for unreadable rows) added.

    Takes every `DeepfakeScorer` argument, plus `path_column` ("path"): when the image
    column holds bytes (`read_binary_files`), each row is paired with its path so that
    errors name the file. Each actor loads the model once, on its own device.
    """

    def __init__(self, *args: Any, path_column: str | None = "path", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path_column = path_column

    def __call__(self, batch: Any, rank: int | None = None) -> pa.Table:
        from ray.data.block import BlockAccessor

        table = _as_table(batch)
        if self.image_column not in table.column_names:
            raise KeyError(
                f"image column {self.image_column!r} not in the Ray batch (columns: "
                f"{table.column_names}); pass image_column=... (read_binary_files calls it "
                "'bytes', read_images and Hugging Face Parquet 'image')"
            )
        images = [_squeeze(x) for x in BlockAccessor.for_block(table).to_numpy(self.image_column)]
        if self.path_column and self.path_column in table.column_names:
            paths = table.column(self.path_column).to_pylist()
            images = [
                {"bytes": bytes(x), "path": p} if isinstance(x, (bytes, bytearray)) else x
                for x, p in zip(images, paths, strict=True)
            ]
        scores = super().__call__({self.image_column: images}, rank)
        for name, values in scores.items():
            column = pa.array(values)  # TypedColumn: the contract's type, even when all null
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, column)
            else:
                table = table.append_column(name, column)
        return table


def score_ray_dataset(
    ds,
    scorer: DeepfakeScorer | None = None,
    *,
    concurrency: int | tuple[int, int] | None = None,
    num_gpus: float | None = None,
    batch_size: int | None = None,
    path_column: str | None = "path",
    provenance: Any = None,
    **scorer_kwargs: Any,
):
    """`ds` with the score columns added: a `map_batches` stage of `RayDeepfakeScorer` actors.

    `scorer` (or `scorer_kwargs`) gives the settings each actor is built with; the weights
    load in the actors. `provenance` (True, "watermark" or a `ProvenanceChecker`, as for
    `DeepfakeScorer`) adds the provenance columns, typed like a local run's. `num_gpus` is per actor (1: one actor per GPU; default 1 when the
    scorer's device is CUDA-bound and the cluster has GPUs, else 0) and `concurrency` is the
    number of actors (default: one per GPU in the cluster, else 1). `batch_size` rows go to
    an actor at a time (default: 4 forward batches)."""
    ray = _require_ray()
    settings = dict(scorer._settings() if scorer is not None else {}, **scorer_kwargs)
    if provenance is not None:
        settings["provenance"] = provenance
    settings.setdefault("image_column", "image")
    # The actor's own device choice ("auto") picks the GPU Ray assigns it.
    cluster_gpus = int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0
    device = str(settings.get("device") or "auto")
    if num_gpus is None:
        num_gpus = 1 if cluster_gpus and device in ("auto", "cuda") else 0
    if concurrency is None:
        concurrency = max(1, int(cluster_gpus // num_gpus)) if num_gpus else 1
    forward = settings.get("batch_size", 16)
    if batch_size is None:
        batch_size = 4 * (forward if isinstance(forward, int) else 64)
    settings["path_column"] = path_column
    sizes = concurrency if isinstance(concurrency, tuple) else (concurrency, concurrency)
    if num_gpus and ray.is_initialized() and cluster_gpus < num_gpus * sizes[0]:
        # Not an error: an autoscaling cluster may add GPU nodes once the actors ask.
        logger.warning(
            "%d scorer actor(s) with %s GPU each, but the Ray cluster has %d GPU(s) now: "
            "they wait until GPUs join",
            sizes[0],
            num_gpus,
            cluster_gpus,
        )
    return ds.map_batches(
        RayDeepfakeScorer,
        fn_constructor_kwargs=settings,
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=sizes[0], max_size=sizes[1]),
        num_gpus=num_gpus,
    )


def _image_struct_batch(
    table: pa.Table, image_column: str, path_column: str | None, out_column: str
) -> pa.Table:
    """The image column as the HF `struct<bytes, path>` (bytes embedded), named `out_column`."""
    from ray.data.block import BlockAccessor

    from curate.io.parquet import IMAGE_TYPE, image_struct

    values = [_squeeze(v) for v in BlockAccessor.for_block(table).to_numpy(image_column)]
    paths = (
        table.column(path_column).to_pylist()
        if path_column and path_column in table.column_names
        else [None] * len(values)
    )
    structs = []
    for v, p in zip(values, paths, strict=True):
        if isinstance(v, (bytes, bytearray)):
            structs.append({"bytes": bytes(v), "path": p})
        elif isinstance(v, np.ndarray):
            s = image_struct(v)  # a decoded array (read_images): stored losslessly as PNG
            structs.append({"bytes": s["bytes"], "path": p or s["path"]})
        else:
            structs.append(image_struct(v))
    drop = [c for c in {image_column, out_column} if c in table.column_names]
    table = table.drop_columns(drop)
    return table.add_column(0, out_column, pa.array(structs, type=IMAGE_TYPE))


def _project_schema(first: pa.Table, metadata: Mapping[str, str] | None) -> pa.Schema:
    from curate.io.parquet import build_schema

    schema = build_schema(first, image_column="image", metadata=metadata)
    return pa.schema([schema.field(n) for n in first.column_names], metadata=schema.metadata)


def _with_image_struct(ds, image_column: str, path_column: str | None):
    """`ds` with its image column as the HF struct named "image" (and `path_column` folded
    into it when the images are bytes)."""
    ds = ds.map_batches(
        _image_struct_batch,
        fn_kwargs={"image_column": image_column, "path_column": path_column, "out_column": "image"},
        batch_format="pyarrow",
    )
    if path_column and image_column != "image":  # read_binary_files: the path is in the struct
        ds = ds.drop_columns([path_column])
    return ds


def write_scored_parquet(
    ds,
    path: str | os.PathLike,
    *,
    image_column: str = "image",
    path_column: str | None = "path",
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> int:
    """Write a scored Ray dataset, in parallel, to a folder of Parquet files in the project's
    schema.

    The image column becomes the Hugging Face `struct<bytes, path>` named "image" (bytes
    embedded: `read_binary_files`' bytes with their path, `read_images`' arrays as PNG, HF
    structs as they are); score columns keep their contract types; every file carries the
    `datasets` features and `metadata` in its schema, so `datasets.load_dataset("parquet",
    data_dir=path)` gets an `Image` feature back. The folder appears only when complete
    (written beside it, then renamed; on a local or shared filesystem); an existing one is
    replaced only with `overwrite`. Returns the number of rows written."""
    import pyarrow.parquet as pq

    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    ds = _with_image_struct(ds, image_column, path_column).materialize()
    schema = _project_schema(ds.take_batch(1, batch_format="pyarrow"), metadata)
    tmp = os.path.join(
        os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp"
    )
    try:
        ds.write_parquet(tmp, schema=schema)
        files = [os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".parquet")]
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _as_source(
    source: str | os.PathLike | Sequence[str] | Source,
    image_column: str | None,
    limit: int | None,
    max_file_bytes: int | None,
) -> Source:
    from curate.sources import path_list_source, resolve_source

    if isinstance(source, Source):
        return source
    if isinstance(source, (str, os.PathLike)):
        return resolve_source(
            source, image_column=image_column, limit=limit, max_file_bytes=max_file_bytes
        )
    return path_list_source(list(source), image_column or "image", limit, max_file_bytes)


def _read_rows(ids: pa.Table, source: Source, schema: pa.Schema | None) -> pa.Table:
    """The source's rows whose numbers `ids` holds (a `ray.data.range` batch), as Arrow."""
    from curate.io.parquet import build_schema, to_table

    numbers = ids.column("id").to_pylist()
    tables = []
    start = 0
    for i in range(1, len(numbers) + 1):  # one read per run of consecutive row numbers
        if i == len(numbers) or numbers[i] != numbers[i - 1] + 1:
            batch = source.read(numbers[start], numbers[i - 1] + 1)
            typed = schema or build_schema(batch, image_column=source.image_column)
            tables.append(to_table(batch, typed.remove_metadata(), source.image_column))
            start = i
    return pa.concat_tables(tables) if tables else pa.table({})


def read_source(
    source: str | os.PathLike | Sequence[str] | Source,
    *,
    image_column: str | None = None,
    limit: int | None = None,
    max_file_bytes: int | None = None,
    rows_per_read: int = 64,
):
    """(Ray dataset, `Source`) for anything `curate.sources.resolve_source` accepts (or a list
    of image paths, or a `Source` already resolved): the rows are numbered, and Ray's tasks
    read them through the Source itself, `rows_per_read` at a time, so a Ray run reads exactly
    what a local run reads (same rows, order, paths, and a row with a reason for every file
    that cannot be read). The image column is the Hugging Face `struct<bytes, path>`."""
    ray = _require_ray()
    from curate.sources import SourceError

    src = _as_source(source, image_column, limit, max_file_bytes)
    if src.num_rows is None:
        raise SourceError(
            f"{src.location} does not say how many rows it has (a streamed Hub dataset); "
            "Ray reads sources whose size is known"
        )
    ds = ray.data.range(src.num_rows).map_batches(
        _read_rows,
        fn_kwargs={"source": src, "schema": src.arrow_schema()},
        batch_format="pyarrow",
        batch_size=rows_per_read,
    )
    return ds, src


def score_files(
    source: str | os.PathLike | Sequence[str] | Source,
    output: str | os.PathLike,
    *,
    address: str | None = None,
    num_gpus: float | None = None,
    concurrency: int | None = None,
    image_column: str | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    metadata: Mapping[str, str] | None = None,
    provenance: Any = False,
    max_file_bytes: int | None = None,
    **scorer_kwargs: Any,
) -> int:
    """Score `source` on a Ray cluster into one Parquet file (what `curate score --engine ray`
    runs): reading and scoring are spread over the cluster's tasks and actors, and the rows
    stream back in source order into `curate.io.parquet.write_parquet`.

    The output is what a local run (`curate.runs.ScoringRun`) writes: same rows, columns,
    types, `datasets` features and `curate.*` metadata (`curate.source` included), plus
    `curate.engine = "ray"`. `source` is anything `resolve_source` accepts, a list of image
    paths, or a resolved `Source`; `provenance` and the other keywords are `DeepfakeScorer`'s.
    `address` is the cluster ("auto", "ray://host:10001"; default: a local one). Returns the
    number of rows written."""
    ray = _require_ray()
    from datasets import Features

    from curate.io.parquet import write_parquet
    from curate.schema import METADATA_PREFIX

    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    src = _as_source(source, image_column, limit, max_file_bytes)
    scorer = DeepfakeScorer(image_column=src.image_column, provenance=provenance, **scorer_kwargs)
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    ds, src = read_source(src)
    ds.context.execution_options.preserve_order = True
    scored = score_ray_dataset(ds, scorer, num_gpus=num_gpus, concurrency=concurrency)
    features = None
    if src.features is not None:
        features = Features({**src.features, **scorer.features})
    meta = scorer.metadata(engine="ray")
    meta[METADATA_PREFIX + "source"] = str(src.location)
    meta.update(metadata or {})
    batches = (t.to_pydict() for t in scored.iter_batches(batch_format="pyarrow", batch_size=256))
    return write_parquet(
        batches,
        output,
        image_column=src.image_column,
        metadata=meta,
        overwrite=overwrite,
        features=features,
    )


def _read_shard_rows(batch: pa.Table, shards: Sequence[Source], rows_per_read: int):
    """The rows of the shards whose numbers `batch` holds, as Arrow tables of `rows_per_read`,
    each tagged with its shard (`__shard__`); a source's own reasons ride along."""
    from curate.io.parquet import build_schema, to_table

    for index in batch.column("shard").to_pylist():
        shard = shards[index]
        schema = shard.arrow_schema()
        for rows in shard.batches(rows_per_read):
            typed = schema or build_schema(rows, image_column=shard.image_column)
            table = to_table(rows, typed.remove_metadata(), shard.image_column)
            yield table.append_column("__shard__", pa.array([index] * table.num_rows, pa.int32()))


def score_shards(
    source: str | os.PathLike | Source,
    output: str | os.PathLike,
    *,
    address: str | None = None,
    num_gpus: float | None = None,
    concurrency: int | None = None,
    image_column: str | None = None,
    image_member: str | None = None,
    overwrite: bool = False,
    metadata: Mapping[str, str] | None = None,
    provenance: Any = False,
    rows_per_read: int = 64,
    **scorer_kwargs: Any,
) -> int:
    """Score a source made of shards (WebDataset tar shards, Parquet files) on a Ray cluster
    into a folder, one output shard per input shard: what `curate score SHARDS -o FOLDER
    --engine ray` runs, the output of a local run (`curate.runs.ShardedScoringRun`, whose
    manifest, per-shard locks and resumption it shares) plus `curate.engine = "ray"`.

    Each Ray task reads one shard through its `Source`; the actors score; the rows stream back
    in order and each shard's file is written atomically as its last row arrives. Returns
    the number of rows in all the output shards."""
    ray = _require_ray()
    import pyarrow.compute as pc

    from curate.io.parquet import AtomicParquetWriter, to_table
    from curate.runs import ShardedScoringRun, with_scores
    from curate.schema import METADATA_PREFIX
    from curate.sources import resolve_source

    src = source
    if not isinstance(src, Source):
        src = resolve_source(source, image_column=image_column, image_member=image_member)
    scorer = DeepfakeScorer(image_column=src.image_column, provenance=provenance, **scorer_kwargs)
    meta = {METADATA_PREFIX + "engine": "ray", **(metadata or {})}
    run = ShardedScoringRun(src, scorer, output, overwrite=overwrite, metadata=meta)
    run.start()
    claimed = run.claim()
    try:
        if claimed:
            if not ray.is_initialized():
                ray.init(address=address, log_to_driver=False)
            shards = [shard for shard, _, _ in claimed]
            items = [{"shard": i} for i in range(len(shards))]
            ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                _read_shard_rows,
                fn_kwargs={"shards": shards, "rows_per_read": rows_per_read},
                batch_size=1,
                batch_format="pyarrow",
            )
            ds.context.execution_options.preserve_order = True
            scored = score_ray_dataset(ds, scorer, num_gpus=num_gpus, concurrency=concurrency)
            current, writer, seen = None, None, set()
            try:
                for table in scored.iter_batches(batch_format="pyarrow", batch_size=None):
                    for index in table.column("__shard__").unique().to_pylist():
                        part = table.filter(pc.equal(table.column("__shard__"), index))
                        part = part.drop_columns(["__shard__"])
                        if index != current:  # shards arrive in order, one after the other
                            if writer is not None:
                                run.record(claimed[current][1], writer.close())
                            current, writer = index, None
                            seen.add(index)
                        rows = part.to_pydict()
                        scores = {c: rows.pop(c) for c in scorer.columns}
                        rows = with_scores(rows, scores)
                        if writer is None:
                            schema = run.output_schema(shards[index], rows)
                            writer = AtomicParquetWriter(claimed[index][1], schema)
                        writer.write(to_table(rows, schema, src.image_column))
                if writer is not None:
                    run.record(claimed[current][1], writer.close())
                    writer = None
                for index, (shard, path, _) in enumerate(claimed):
                    if index not in seen:  # no rows came back: an empty shard
                        empty = {shard.image_column: [], **{c: [] for c in scorer.columns}}
                        schema = run.output_schema(shard, empty)
                        run.record(path, AtomicParquetWriter(path, schema).close())
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
    finally:
        for _, _, lock in claimed:
            lock.release()
    # Shards another worker held are waited for (and any it left, scored) as a local run does.
    return run.run()
