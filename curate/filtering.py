"""The keep / remove / review decision, and filtering scored data with it.

One rule (`DecisionRule`) decides every row, whatever holds it: a `datasets.Dataset`
(`filter_synthetic`), a scored Parquet file (`filter_parquet`), FiftyOne views, the CLI.

- `fake_prob < threshold`: keep; otherwise remove. The default threshold is
  `curate.LABEL_THRESHOLD` (0.5), the cut `deepfake_label` is made at: by default a row
  labelled Fake is removed and one labelled Real kept.
- With a review band `(lo, hi)` (and `lo <= threshold <= hi`): `fake_prob < lo` keep,
  `lo <= fake_prob < hi` review, `fake_prob >= hi` remove.
- A row without a score (unreadable image: null / NaN `fake_prob`) is kept, removed, or set
  apart as "unscored", by an explicit choice that defaults to setting it apart, so nothing
  disappears silently.
- Opt-in, with provenance columns (`curate.provenance`): `remove_strong_evidence` removes rows
  with strong evidence of synthesis (a valid C2PA AI-generation claim, a matched watermark)
  whatever their score; `review_conflicts` sends rows whose evidence and score disagree to
  review.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from curate.schema import (
    ERROR,
    FAKE_PROB,
    LABEL_THRESHOLD,
    METADATA_PREFIX,
    PROVENANCE_STRONG,
    PROVENANCE_SYNTHETIC,
    metadata_entries,
)

KEEP, REMOVE, REVIEW, UNSCORED = "keep", "remove", "review", "unscored"
OUTCOMES = (KEEP, REMOVE, REVIEW, UNSCORED)
UNSCORED_CHOICES = ("keep", "drop", "separate")
PROVENANCE_DECISION_COLUMNS = (PROVENANCE_SYNTHETIC, PROVENANCE_STRONG)


@dataclass(frozen=True)
class DecisionRule:
    """Which rows to keep, remove, review or set apart, from their `fake_prob`.

    Args:
        threshold: rows with `fake_prob < threshold` are kept, the rest removed.
        review_band: `(lo, hi)` with `lo <= threshold <= hi`: rows with `lo <= fake_prob < hi`
            go to review instead (only `fake_prob < lo` is kept, `>= hi` removed).
        unscored: rows with no score: "keep", "drop" (outcome "remove") or "separate"
            (outcome "unscored").
        remove_strong_evidence: rows whose `provenance_strong` is true are removed whatever
            their score (or lack of one).
        review_conflicts: rows whose provenance evidence disagrees with the score go to review:
            evidence says synthetic (`provenance_synthetic` true) but the score keeps the row,
            or evidence says captured (false) but the score removes it.
    """

    threshold: float = LABEL_THRESHOLD
    review_band: tuple[float, float] | None = None
    unscored: Literal["keep", "drop", "separate"] = "separate"
    remove_strong_evidence: bool = False
    review_conflicts: bool = False

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
            raise ValueError(f"threshold must be a number in [0, 1], got {t!r}")
        object.__setattr__(self, "threshold", float(t))
        if self.review_band is not None:
            band = tuple(self.review_band)
            if len(band) != 2 or not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) for b in band
            ):
                raise ValueError(f"review_band must be two numbers (lo, hi), got {band!r}")
            lo, hi = float(band[0]), float(band[1])
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(f"review_band must satisfy 0 <= lo < hi <= 1, got ({lo}, {hi})")
            if not lo <= self.threshold <= hi:
                raise ValueError(
                    f"threshold {self.threshold} must lie inside the review band ({lo}, {hi}): "
                    "rows below the band are kept, rows above it removed"
                )
            object.__setattr__(self, "review_band", (lo, hi))
        if self.unscored not in UNSCORED_CHOICES:
            raise ValueError(
                f"unscored must be one of {', '.join(UNSCORED_CHOICES)}; got {self.unscored!r}"
            )
        for name in ("remove_strong_evidence", "review_conflicts"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def uses_provenance(self) -> bool:
        """Whether decisions read the provenance columns as well as the score."""
        return bool(self.remove_strong_evidence or self.review_conflicts)

    @property
    def can_review(self) -> bool:
        """Whether the rule can send rows to review."""
        return self.review_band is not None or bool(self.review_conflicts)

    @property
    def keep_below(self) -> float:
        """Rows with `fake_prob` below this are kept."""
        return self.review_band[0] if self.review_band else self.threshold

    @property
    def remove_from(self) -> float:
        """Rows with `fake_prob` at or above this are removed."""
        return self.review_band[1] if self.review_band else self.threshold

    @property
    def unscored_outcome(self) -> str:
        return {"keep": KEEP, "drop": REMOVE, "separate": UNSCORED}[self.unscored]

    def decide(
        self, fake_prob: float | None, synthetic: bool | None = None, strong: bool | None = None
    ) -> str:
        """The outcome for one row: "keep", "remove", "review" or "unscored".

        `synthetic` / `strong` are the row's `provenance_synthetic` / `provenance_strong`;
        they matter only with `remove_strong_evidence` / `review_conflicts`."""
        if self.remove_strong_evidence and strong:
            return REMOVE
        if fake_prob is None or math.isnan(fake_prob):
            return self.unscored_outcome
        p = float(fake_prob)
        if p < self.keep_below:
            outcome = KEEP
        elif p >= self.remove_from:
            outcome = REMOVE
        else:
            outcome = REVIEW
        if self.review_conflicts and (
            (outcome == KEEP and synthetic is True) or (outcome == REMOVE and synthetic is False)
        ):
            return REVIEW
        return outcome

    def decide_many(self, fake_probs: Any, synthetic: Any = None, strong: Any = None) -> np.ndarray:
        """`decide` for whole columns (lists with None, numpy arrays, pyarrow arrays)."""
        p = _as_float_array(fake_probs)
        out = np.full(p.shape, REVIEW, dtype="<U8")
        with np.errstate(invalid="ignore"):
            out[p < self.keep_below] = KEEP
            out[p >= self.remove_from] = REMOVE
        if self.review_conflicts and synthetic is not None:
            says = _as_float_array(synthetic)  # 1 synthetic, 0 captured, NaN no evidence
            out[(out == KEEP) & (says == 1)] = REVIEW
            out[(out == REMOVE) & (says == 0)] = REVIEW
        out[np.isnan(p)] = self.unscored_outcome
        if self.remove_strong_evidence and strong is not None:
            out[_as_float_array(strong) == 1] = REMOVE
        return out

    def decide_columns(self, data: Any, score_column: str = FAKE_PROB) -> np.ndarray:
        """`decide_many` on a table (pyarrow Table / RecordBatch, or a dict of columns),
        reading the provenance columns when the rule uses them."""
        names = data.schema.names if hasattr(data, "schema") else list(data)

        def column(name: str) -> Any:
            return data.column(name) if hasattr(data, "column") else data[name]

        if not self.uses_provenance:
            return self.decide_many(column(score_column))
        missing = [c for c in PROVENANCE_DECISION_COLUMNS if c not in names]
        if missing:
            raise ValueError(
                f"the rule uses provenance evidence but the data has no {', '.join(missing)} "
                "column; score with provenance (`curate score --provenance`, "
                "DeepfakeScorer(provenance=True))"
            )
        synthetic, strong = PROVENANCE_DECISION_COLUMNS
        return self.decide_many(column(score_column), column(synthetic), column(strong))

    def to_metadata(self) -> dict[str, str]:
        """The rule as `curate.*` schema-metadata entries for the files it writes."""
        settings: dict[str, Any] = {
            "threshold": self.threshold,
            "review_band": list(self.review_band) if self.review_band else None,
            "unscored": self.unscored,
        }
        if self.uses_provenance:
            settings["remove_strong_evidence"] = self.remove_strong_evidence
            settings["review_conflicts"] = self.review_conflicts
        return metadata_entries(settings)


def _as_float_array(values: Any) -> np.ndarray:
    import pyarrow as pa

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_boolean(values.type):
            values = values.cast(pa.int8())
        values = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype(np.float64, copy=False)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


@dataclass
class FilterCounts:
    """Rows per outcome; `total` is every input row."""

    keep: int = 0
    remove: int = 0
    review: int = 0
    unscored: int = 0
    errored: int = 0  # rows with a `deepfake_error`, whatever their outcome

    @property
    def total(self) -> int:
        return self.keep + self.remove + self.review + self.unscored

    def add(self, outcomes: np.ndarray) -> None:
        for name in OUTCOMES:
            setattr(self, name, getattr(self, name) + int(np.count_nonzero(outcomes == name)))


@dataclass
class FilterResult:
    """`filter_synthetic`'s output: one dataset per outcome (empty ones included)."""

    kept: Any
    removed: Any
    review: Any
    unscored: Any
    counts: FilterCounts = field(default_factory=FilterCounts)


def _rule(
    rule: DecisionRule | None,
    threshold: float | None,
    review_band: tuple[float, float] | None,
    unscored: str | None,
) -> DecisionRule:
    if rule is not None:
        if threshold is not None or review_band is not None or unscored is not None:
            raise ValueError("pass either rule=... or threshold/review_band/unscored, not both")
        return rule
    return DecisionRule(
        threshold=LABEL_THRESHOLD if threshold is None else threshold,
        review_band=review_band,
        unscored=unscored or "separate",
    )


def filter_synthetic(
    dataset,
    rule: DecisionRule | None = None,
    *,
    threshold: float | None = None,
    review_band: tuple[float, float] | None = None,
    unscored: Literal["keep", "drop", "separate"] | None = None,
    score_column: str = FAKE_PROB,
) -> FilterResult:
    """Split a scored `datasets.Dataset` by `rule` (or `threshold` / `review_band` /
    `unscored`) into kept / removed / review / unscored datasets.

    Reads only the score column; the splits are index selections of `dataset` (no image is
    decoded or copied)."""
    rule = _rule(rule, threshold, review_band, unscored)
    if score_column not in dataset.column_names:
        raise ValueError(
            f"no {score_column!r} column in the dataset (columns: {dataset.column_names}); "
            "score it first (dataset.map(DeepfakeScorer(), batched=True))"
        )
    wanted = (score_column, ERROR, *PROVENANCE_DECISION_COLUMNS)
    # Through the dataset's indices mapping (a shuffled or selected dataset), not its raw table.
    table = dataset.select_columns([c for c in wanted if c in dataset.column_names]).with_format(
        "arrow"
    )[:]
    outcomes = rule.decide_columns(table, score_column)
    counts = FilterCounts()
    counts.add(outcomes)
    if ERROR in table.column_names:
        counts.errored = table.num_rows - table.column(ERROR).null_count
    parts = {o: dataset.select(np.flatnonzero(outcomes == o)) for o in OUTCOMES}
    return FilterResult(
        kept=parts[KEEP],
        removed=parts[REMOVE],
        review=parts[REVIEW],
        unscored=parts[UNSCORED],
        counts=counts,
    )


def filter_parquet(
    scored: str | os.PathLike | Sequence[str | os.PathLike],
    kept: str | os.PathLike,
    rule: DecisionRule | None = None,
    *,
    removed: str | os.PathLike | None = None,
    review: str | os.PathLike | None = None,
    unscored: str | os.PathLike | None = None,
    overwrite: bool = False,
    score_column: str = FAKE_PROB,
    batch_size: int = 100,
    progress: Any = None,
) -> FilterCounts:
    """Stream scored Parquet file(s) into one file per outcome.

    `kept` always gets the kept rows; `removed` (optional: removed rows are only counted
    without it) the removed ones; review rows go to `review` and set-apart unscored rows to
    `unscored`, which must be given when the rule can produce them. The files keep the
    input's schema and metadata, plus the rule (`curate.threshold`, ...) and the outcome
    (`curate.outcome`). Each file appears complete at the end, or not at all (temp file + rename).
    `progress(rows)` is called after each batch."""
    import pyarrow.parquet as pq

    from curate.io.parquet import AtomicParquetWriter

    rule = rule or DecisionRule()
    paths = [scored] if isinstance(scored, (str, os.PathLike)) else list(scored)
    if not paths:
        raise ValueError("no scored Parquet files given")
    schema = pq.read_schema(paths[0])
    if score_column not in schema.names:
        raise ValueError(
            f"{os.fspath(paths[0])} has no {score_column!r} column (columns: "
            f"{', '.join(schema.names)}); score it first with `curate score`"
        )
    targets: dict[str, str | os.PathLike | None] = {
        KEEP: kept,
        REMOVE: removed,
        REVIEW: review,
        UNSCORED: unscored,
    }
    if rule.can_review and review is None:
        raise ValueError(
            "a review band needs a file for the review rows (review=...), as does review_conflicts"
        )
    if rule.uses_provenance:
        missing = [c for c in PROVENANCE_DECISION_COLUMNS if c not in schema.names]
        if missing:
            raise ValueError(
                f"{os.fspath(paths[0])} has no {', '.join(missing)} column: the rule uses "
                "provenance evidence; score with `curate score --provenance`"
            )
    if rule.unscored == "separate" and unscored is None:
        raise ValueError("unscored='separate' needs a file for the unscored rows (unscored=...)")
    named = [os.path.abspath(os.fspath(p)) for p in targets.values() if p is not None]
    if len(set(named)) != len(named):
        raise ValueError("the kept, removed, review and unscored files must be different paths")
    inputs = {os.path.abspath(os.fspath(p)) for p in paths}
    if inputs & set(named):
        raise ValueError("an output file cannot be the scored input file")
    if not overwrite:
        for p in targets.values():
            if p is not None and os.path.exists(p):
                raise FileExistsError(f"{os.fspath(p)} already exists (pass --overwrite)")
    base_meta = dict(schema.metadata or {})
    base_meta.update({k.encode(): v.encode() for k, v in rule.to_metadata().items()})
    writers: dict[str, AtomicParquetWriter] = {}
    counts = FilterCounts()
    try:
        for outcome, p in targets.items():
            if p is not None:
                meta = dict(base_meta)
                meta[(METADATA_PREFIX + "outcome").encode()] = outcome.encode()
                writers[outcome] = AtomicParquetWriter(
                    p, schema.with_metadata(meta), overwrite=overwrite
                )
        for p in paths:
            pf = pq.ParquetFile(p)
            if not pf.schema_arrow.equals(schema, check_metadata=False):
                raise ValueError(
                    f"{os.fspath(p)} does not have the same columns as {os.fspath(paths[0])}"
                )
            for batch in pf.iter_batches(batch_size=batch_size):
                outcomes = rule.decide_columns(batch, score_column)
                counts.add(outcomes)
                if ERROR in batch.schema.names:
                    col = batch.column(ERROR)
                    counts.errored += len(col) - col.null_count
                for outcome, writer in writers.items():
                    mask = outcomes == outcome
                    if mask.any():
                        writer.write(batch.filter(mask))
                if progress is not None:
                    progress(batch.num_rows)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
    return counts


def outcome_counts(outcomes: Sequence[str] | np.ndarray) -> Mapping[str, int]:
    """How many rows got each outcome (every outcome listed, zeros included)."""
    arr = np.asarray(outcomes)
    return {o: int(np.count_nonzero(arr == o)) for o in OUTCOMES}


def filter_shards(
    scored: Sequence[tuple[str, str | os.PathLike]],
    targets: Mapping[str, str | os.PathLike],
    rule: DecisionRule | None = None,
    *,
    format: Literal["parquet", "webdataset"] = "parquet",
    overwrite: bool = False,
    score_column: str = FAKE_PROB,
    progress: Any = None,
) -> FilterCounts:
    """Split each scored shard into one shard per outcome, in the folders `targets` names
    (outcome -> folder; "keep" is required, an outcome without a folder is only counted).

    `scored` is `(name, path)` per scored Parquet shard (`curate.runs.ShardedScoringRun`'s
    output, `name` relative to its folder). With `format="parquet"` each output shard is
    `filter_parquet`'s file for that shard; with "webdataset" it is a tar shard holding the
    samples of the tar shard the rows were scored from (its `curate.source`) with every member
    byte-identical (`curate.io.webdataset.split_shard`). Each shard appears complete or not
    at all. `progress(rows)` is called after each shard."""
    import pyarrow.parquet as pq

    from curate.io.parquet import curate_metadata
    from curate.io.webdataset import shard_stem, split_shard

    rule = rule or DecisionRule()
    if KEEP not in targets:
        raise ValueError("the kept shards need a folder (targets['keep'])")
    counts = FilterCounts()
    for name, path in scored:
        stem = os.path.splitext(name)[0]
        if format == "parquet":
            out = {o: os.path.join(targets[o], name) if o in targets else None for o in OUTCOMES}
            for folder in {os.path.dirname(p) for p in out.values() if p is not None}:
                os.makedirs(folder, exist_ok=True)
            done = filter_parquet(
                path,
                out[KEEP],
                rule,
                removed=out[REMOVE],
                review=out[REVIEW],
                unscored=out[UNSCORED],
                overwrite=overwrite,
                score_column=score_column,
            )
            for outcome in OUTCOMES:
                setattr(counts, outcome, getattr(counts, outcome) + getattr(done, outcome))
            counts.errored += done.errored
        else:
            shard = curate_metadata(path).get(METADATA_PREFIX + "source")
            if shard is None or not os.path.isfile(shard):
                raise ValueError(
                    f"{os.fspath(path)} was scored from {shard or 'an unnamed source'}, which is "
                    "not a tar shard here; run curate filter where curate score ran"
                )
            wanted = ["__key__", score_column, ERROR, *PROVENANCE_DECISION_COLUMNS]
            names = pq.read_schema(path).names
            if "__key__" not in names:
                raise ValueError(
                    f"{os.fspath(path)} has no __key__ column: --format webdataset needs rows "
                    "scored from WebDataset shards"
                )
            table = pq.read_table(path, columns=[c for c in wanted if c in names])
            outcomes = rule.decide_columns(table, score_column)
            ext = shard[len(shard_stem(shard)) :]
            out = {o: os.path.join(folder, stem + ext) for o, folder in targets.items()}
            for folder in {os.path.dirname(p) for p in out.values()}:
                os.makedirs(folder, exist_ok=True)
            keys = table.column("__key__").to_pylist()
            decisions = zip(keys, outcomes.tolist(), strict=True)
            split_shard(shard, decisions, out, overwrite=overwrite)
            counts.add(outcomes)
            counts.errored += table.num_rows - table.column(ERROR).null_count
        if progress is not None:
            progress(pq.ParquetFile(path).metadata.num_rows)
    return counts
