"""Adapting a detector to a user's own labelled data: `adapt(AdaptRequest)` (`curate adapt`).

Every labelled image goes through the detector once, batched as scoring is: its own score
(the base detector's) and its embedding (what the classification layer reads) are kept, in
chunks in a working folder beside the output (`HEAD.work/`), so an interrupted run resumes
where it stopped. A linear head (`curate.detectors.head.fit_head`) is fitted on a training
part, and the base detector and the head are measured side by side on held-out images the
head never saw: a stratified part of the sample, or a separate `eval_source`. Labels are read
as `curate eval` reads them (`curate.evaluation.collect_labelled`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from curate.app.options import RequestError, ScorerSettings, SourceSettings, check_label_map
from curate.app.progress import Progress

if TYPE_CHECKING:
    from curate.detectors.head import HeadFit, LinearHead
    from curate.scorer import DeepfakeScorer
    from curate.sources import Source

WORK_FORMAT = 1
_CHUNK = re.compile(r"chunk-(\d{8})\.npz")


@dataclass(frozen=True)
class AdaptRequest(ScorerSettings, SourceSettings):
    """What to adapt on and how (the options of `curate adapt`; the scorer's and the source's
    are `ScorerSettings` and `SourceSettings`, keyword-only: one `model`, no `head`).

    `source` holds labelled images (as `curate eval` reads them: a `label_column`, or for a
    folder of images its `fake/` and `real/` subfolders); `output` is the head folder to
    write. Held-out figures come from `eval_source` when given, else from a stratified
    `holdout` share of `source` that is not used for fitting."""

    source: str | os.PathLike
    output: str | os.PathLike
    label_column: str = "label"
    label_map: str | Mapping[str, str] | Iterable[str] | None = None
    eval_source: str | os.PathLike | None = None
    holdout: float = 0.25
    seed: int = 0
    chunk_rows: int = 256
    overwrite: bool = False


@dataclass(frozen=True)
class Figures:
    """Ranking quality on the held-out images (None where one class is missing)."""

    roc_auc: float | None
    average_precision: float | None


@dataclass(frozen=True)
class AdaptResult:
    """The head written, what it was fitted on, and the base detector and head side by side."""

    output: str
    model: str
    train_fake: int
    train_real: int
    heldout: str  # where the held-out figures come from, in words
    eval_fake: int
    eval_real: int
    base: Figures  # the detector as it is
    head: Figures  # the detector with the adapted head
    C: float
    folds: int
    resumed_rows: int  # rows whose embeddings an earlier, interrupted run had extracted
    unreadable: int
    unlabelled: int


class AdaptInterrupted(KeyboardInterrupt):
    """Adapting was interrupted; the finished chunks wait in `work_dir` for a re-run."""

    def __init__(self, work_dir: str) -> None:
        super().__init__(work_dir)
        self.work_dir = work_dir


@dataclass
class _Extracted:
    """Labelled, scored rows of one source: labels, base logit gaps, embeddings."""

    y: np.ndarray
    gap: np.ndarray
    emb: np.ndarray
    rows: np.ndarray
    unreadable: int = 0
    unlabelled: int = 0
    resumed: int = 0


def adapt(request: AdaptRequest, progress: Progress | None = None) -> AdaptResult:
    """Fit a head for `request.model` on `request.source` and write it to `request.output`.

    Raises `RequestError` (a `ValueError`) for options that cannot work, before any model
    loads, `curate.evaluation.EvaluationError` (also a `ValueError`) for labels it cannot
    read, and `AdaptInterrupted` when interrupted (a re-run resumes)."""
    from curate.calibration import fake_probability
    from curate.detectors.head import fit_head

    progress = progress or Progress()
    src, eval_src, label_map, batch_size, output = _check(request)
    scorer = _scorer(request, src, batch_size)
    progress.wait(f"Loading {scorer.model}")
    scorer.load()
    work = output.rstrip("/\\") + ".work"
    try:
        data = _extract(src, scorer, request, label_map, os.path.join(work, "train"), progress)
        if eval_src is not None:
            held = _extract(
                eval_src, scorer, request, label_map, os.path.join(work, "eval"), progress
            )
    except KeyboardInterrupt:
        raise AdaptInterrupted(work) from None
    if eval_src is not None:
        train, heldout = data, held
        where = f"{os.fspath(request.eval_source)} (--eval)"
    else:
        train, heldout = _split(data, request.holdout, request.seed)
        where = f"a stratified {request.holdout:.0%} of the sample, held out from fitting"
    progress.wait(f"Fitting the head on {len(train.y)} images")
    fit = fit_head(train.emb, train.y, seed=request.seed)
    base = _figures(heldout.y, fake_probability(heldout.gap))
    adapted = _figures(heldout.y, fake_probability(fit.coef @ heldout.emb.T + fit.intercept))
    result = AdaptResult(
        output=output,
        model=scorer.model,
        train_fake=int(train.y.sum()),
        train_real=int(len(train.y) - train.y.sum()),
        heldout=where,
        eval_fake=int(heldout.y.sum()),
        eval_real=int(len(heldout.y) - heldout.y.sum()),
        base=base,
        head=adapted,
        C=fit.C,
        folds=fit.folds,
        resumed_rows=data.resumed + (held.resumed if eval_src is not None else 0),
        unreadable=data.unreadable,
        unlabelled=data.unlabelled,
    )
    _head_of(fit, request, scorer, result).save(output, overwrite=request.overwrite)
    shutil.rmtree(work, ignore_errors=True)
    return result


def _check(request: AdaptRequest):
    """Everything that can be wrong with the request, found before any model loads."""
    import importlib.util

    from curate.sources import resolve_source

    if importlib.util.find_spec("sklearn") is None:
        raise RequestError("curate adapt needs scikit-learn: pip install 'curate[eval]'")
    output = os.fspath(request.output)
    if os.path.exists(output) and not os.path.isdir(output):
        raise RequestError(f"-o/--output {output} is a file; name a folder for the head")
    if os.path.exists(output) and not request.overwrite:
        raise RequestError(f"{output} already exists (pass --overwrite to replace it)")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise RequestError(f"-o/--output {output}: the folder {parent} does not exist")
    if not isinstance(request.model, (str, type(None))):
        raise RequestError("curate adapt fits a head for one model: pass a single --model")
    if request.head is not None:
        raise RequestError("curate adapt fits a head on the model's own embeddings: no --head")
    if request.eval_source is None and not 0.05 <= request.holdout <= 0.5:
        raise RequestError(f"--holdout must be between 0.05 and 0.5, got {request.holdout}")
    if request.chunk_rows < 1:
        raise RequestError(f"--chunk-rows must be at least 1, got {request.chunk_rows}")
    label_map = check_label_map(request.label_map)
    batch_size = request.check_scoring()
    common = dict(image_column=request.image_column, split=request.split)
    src = resolve_source(request.source, limit=request.limit, **common)
    eval_src = None
    if request.eval_source is not None:
        eval_src = resolve_source(request.eval_source, **common)
    return src, eval_src, label_map, batch_size, output


def _scorer(request: AdaptRequest, src: Source, batch_size: int | str) -> DeepfakeScorer:
    # with_logits: the base detector's figures come from its exact logit gap.
    return request.scorer(batch_size, src.image_column, with_logits=True)


# -- embeddings, resumably ----------------------------------------------------------------------
class _EmbeddingProbe:
    """The scorer as `collect_labelled` sees it, keeping each row's embedding (None for a row
    that could not be scored) in the order the rows were scored."""

    def __init__(self, scorer: DeepfakeScorer) -> None:
        self.scorer = scorer
        self.embeddings: list[np.ndarray | None] = []

    def __getattr__(self, name: str) -> Any:  # model, revision, calibration...
        return getattr(self.scorer, name)

    def score_images(self, images: Any) -> dict[str, list]:
        from curate import schema
        from curate.detectors.head import captured_embeddings

        with captured_embeddings(self.scorer.detector.model) as passes:
            out = self.scorer.score_images(images)
        # The scorer runs its forward passes in row order over the rows it could read.
        scored = [i for i, err in enumerate(out[schema.ERROR]) if err is None]
        got = np.concatenate(passes) if passes else np.zeros((0, 0), np.float32)
        if len(got) != len(scored):
            raise RuntimeError(f"{len(got)} embeddings for {len(scored)} scored rows")
        rows: list[np.ndarray | None] = [None] * len(out[schema.ERROR])
        for j, i in enumerate(scored):
            rows[i] = got[j]
        self.embeddings.extend(rows)
        return out


def _window(src: Source, start: int, stop: int) -> Source:
    """Rows [start, stop) of `src` as a source of their own (rows numbered from 0)."""

    def read(a: int, b: int, size: int) -> Iterator[dict[str, list]]:
        left = b - a  # `Source.batches` passes the window's own stop: never None here
        for batch in src.batches(min(size, left), start=start + a):
            n = len(next(iter(batch.values()), ()))
            if n >= left:
                yield {k: list(v)[:left] for k, v in batch.items()}
                return
            yield batch
            left -= n

    return dataclasses.replace(src, num_rows=stop - start, _read=read)


def _extract(
    src: Source,
    scorer: DeepfakeScorer,
    request: AdaptRequest,
    label_map: Mapping[str, str] | None,
    work: str,
    progress: Progress,
) -> _Extracted:
    """Labels, base gaps and embeddings of `src`, chunk by chunk; finished chunks are kept in
    `work` and reused by a run with the same arguments."""
    from curate.evaluation.labels import collect_labelled

    manifest = _manifest(src, scorer, request, label_map)
    chunk_rows, done = _resume(work, manifest, request.overwrite)
    resumed = sum(int(np.load(_chunk(work, k))["n_rows"]) for k in range(done))
    if resumed:
        progress.note(f"Resuming: {resumed} rows already extracted in {work}")
    progress.start(f"Embedding {src.location}", total=src.num_rows, done=resumed)
    k = done
    while src.num_rows is None or k * chunk_rows < src.num_rows:
        start = k * chunk_rows
        stop = start + chunk_rows if src.num_rows is None else min(start + chunk_rows, src.num_rows)
        probe = _EmbeddingProbe(scorer)
        sample = collect_labelled(
            _window(src, start, stop),
            request.label_column,
            scorer=probe,
            label_map=label_map,
            batch_size=max(64, scorer.chunk_size()),
            rescore=True,  # the embeddings come from scoring, even where scores are stored
            progress=progress.advance,
        )
        emb = [probe.embeddings[r] for r in sample.rows]
        _write_chunk(
            _chunk(work, k),
            rows=sample.rows + start,
            y=sample.y,
            gap=sample.gap,
            emb=np.stack(emb) if emb else np.zeros((0, 0), np.float32),
            n_rows=sample.n_rows,
            unlabelled=sample.n_unlabelled,
            unreadable=len(sample.errors),
        )
        k += 1
        if sample.n_rows < stop - start:  # a source of unknown length ended
            break
    return _read_chunks(work, k, resumed)


def _manifest(
    src: Source,
    scorer: DeepfakeScorer,
    request: AdaptRequest,
    label_map: Mapping[str, str] | None,
) -> dict[str, Any]:
    from curate.schema import METADATA_PREFIX

    scoring = scorer.metadata()
    scoring.pop(METADATA_PREFIX + "version", None)
    return {
        "format": WORK_FORMAT,
        "source": {"kind": src.kind, "location": str(src.location), "fingerprint": src.fingerprint},
        "image_column": src.image_column,
        "rows": src.num_rows,
        "label_column": request.label_column,
        "label_map": label_map,
        "scoring": scoring,
        "chunk_rows": int(request.chunk_rows),
    }


def _resume(work: str, manifest: dict[str, Any], overwrite: bool) -> tuple[int, int]:
    """(chunk rows, finished chunks to reuse) for a working folder; a fresh folder when it
    holds nothing reusable, ResumeMismatchError when it holds another run (unless
    `overwrite`)."""
    from curate.io.atomic import atomic_write_text
    from curate.runs import ResumeMismatchError

    path = os.path.join(work, "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, ValueError):
        old = None
    if old is not None:
        mine = {k: v for k, v in manifest.items() if k != "chunk_rows"}
        differ = sorted(k for k in mine if old.get(k) != mine[k])
        if not differ:
            done = 0
            while os.path.exists(_chunk(work, done)) and _readable(_chunk(work, done)):
                done += 1
            return int(old["chunk_rows"]), done
        if not overwrite:
            raise ResumeMismatchError(
                f"{work} holds an unfinished `curate adapt` with different {', '.join(differ)}; "
                "re-run with the same arguments to resume it, or pass --overwrite to discard it"
            )
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return int(manifest["chunk_rows"]), 0


def _chunk(work: str, k: int) -> str:
    return os.path.join(work, f"chunk-{k:08d}.npz")


def _readable(path: str) -> bool:
    try:
        with np.load(path) as z:
            return {"rows", "y", "gap", "emb", "n_rows"} <= set(z.files)
    except (OSError, ValueError, EOFError):
        return False


def _write_chunk(path: str, **arrays: Any) -> None:
    """One chunk, appearing only when whole (written beside it, then renamed)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_chunks(work: str, chunks: int, resumed: int) -> _Extracted:
    parts = [dict(np.load(_chunk(work, k))) for k in range(chunks)]
    embs = [p["emb"] for p in parts if len(p["emb"])]
    return _Extracted(
        y=np.concatenate([p["y"] for p in parts]).astype(np.int8) if parts else np.zeros(0),
        gap=np.concatenate([p["gap"] for p in parts]) if parts else np.zeros(0),
        emb=np.concatenate(embs) if embs else np.zeros((0, 0), np.float32),
        rows=np.concatenate([p["rows"] for p in parts]) if parts else np.zeros(0, np.int64),
        unreadable=sum(int(p["unreadable"]) for p in parts),
        unlabelled=sum(int(p["unlabelled"]) for p in parts),
        resumed=resumed,
    )


# -- fitting and measuring ----------------------------------------------------------------------
def _split(data: _Extracted, holdout: float, seed: int) -> tuple[_Extracted, _Extracted]:
    """A stratified (train, held-out) split of the labelled rows."""
    from sklearn.model_selection import train_test_split

    n_fake, n_real = int(data.y.sum()), int(len(data.y) - data.y.sum())
    # Fitting needs two of each class (for cross-validation), the held-out part one.
    if min(n_fake, n_real) < 4:
        raise RequestError(
            f"the sample has {n_fake} Fake and {n_real} Real labelled images that could be "
            "read; adapting needs several of each (a few hundred in all to be worth it)"
        )
    idx = np.arange(len(data.y))
    train, test = train_test_split(idx, test_size=holdout, stratify=data.y, random_state=seed)

    def part(rows: np.ndarray) -> _Extracted:
        rows = np.sort(rows)
        return _Extracted(data.y[rows], data.gap[rows], data.emb[rows], data.rows[rows])

    return part(train), part(test)


def _figures(y: np.ndarray, p: np.ndarray) -> Figures:
    from curate.evaluation.metrics import compute_metrics

    m = compute_metrics(y, p)
    return Figures(m.roc_auc, m.average_precision)


def _head_of(
    fit: HeadFit, request: AdaptRequest, scorer: DeepfakeScorer, result: AdaptResult
) -> LinearHead:
    """The fitted head with what it belongs to and how it did, ready to save."""
    from curate import __version__
    from curate.detectors.head import backbone_weights_sha256

    def figures(f: Figures) -> dict[str, float | None]:
        return {"roc_auc": f.roc_auc, "average_precision": f.average_precision}

    return fit.as_head(
        scorer.model,
        scorer.revision,
        backbone_weights_sha256(scorer.model, scorer.revision),
        train={
            "source": os.fspath(request.source),
            "label_column": request.label_column,
            "fake": result.train_fake,
            "real": result.train_real,
            "dtype": scorer.metadata()["curate.dtype"],
        },
        heldout={
            "from": result.heldout,
            "fake": result.eval_fake,
            "real": result.eval_real,
            "detector": figures(result.base),
            "head": figures(result.head),
        },
        curate_version=__version__,
    )
