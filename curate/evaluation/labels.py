"""Ground truth: label values -> Fake/Real, and the labelled sample they make with the scores.

A `LabelledSample` holds the scored, labelled rows of a source (or of columns already in
hand) with the model and calibration their scores were made with. Scores are read as stored
when the source has them (a file written by `curate score`), otherwise made by the scorer the
caller passes: nothing here builds a scorer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from curate import schema
from curate.calibration import Calibration
from curate.evaluation.base import EvaluationError
from curate.evaluation.calibration import gap_from_prob
from curate.evaluation.stored import StoredScoring, read_stored_scoring, scoring_of

if TYPE_CHECKING:
    from curate.scorer import DeepfakeScorer
    from curate.sources import Source

# Ground-truth label names, any case (the scorer's own labels are `schema.FAKE` / `schema.REAL`).
FAKE_NAMES = frozenset({"fake", "synthetic", "generated", "ai", "ai-generated", "ai_generated"})
REAL_NAMES = frozenset({"real", "authentic", "genuine", "natural"})


def parse_label_map(spec: str | Mapping[str, str] | Iterable[str] | None) -> dict[str, str] | None:
    """`"ai=Fake,photo=Real"` (or a list of `value=Fake|Real` items, or a dict) -> {value: class}."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        parts = (
            spec.split(",") if isinstance(spec, str) else [s for x in spec for s in x.split(",")]
        )
        items = []
        for part in (p.strip() for p in parts):
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"label map item {part!r} is not of the form VALUE=Fake|Real")
            key, _, value = part.rpartition("=")
            items.append((key.strip(), value.strip()))
    out: dict[str, str] = {}
    for key, value in items:
        cls = _class_name(value)
        if cls is None:
            raise ValueError(f"label map sends {key!r} to {value!r}; it must be Fake or Real")
        out[str(key)] = cls
    if not out:
        raise ValueError("empty label map")
    return out


def _class_name(value: Any) -> str | None:
    name = str(value).strip().lower()
    if name in FAKE_NAMES:
        return schema.FAKE
    if name in REAL_NAMES:
        return schema.REAL
    return None


def encode_labels(
    values: Sequence[Any], label_map: Mapping[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth values -> (`y`: 1 Fake / 0 Real, `labelled`: mask of rows with a label).

    Values are matched by name (Fake/Real and a few synonyms, any case) or through
    `label_map` (keys compared as strings, so `{"0": "Fake"}` matches the integer 0). Null
    labels are left out; any other value neither names nor the map know is an error: numbers
    and booleans always need a map, since 0 means Fake on the model card and Real elsewhere."""
    y = np.zeros(len(values), dtype=np.int8)
    labelled = np.zeros(len(values), dtype=bool)
    unknown: dict[str, int] = {}
    for i, v in enumerate(values):
        if _missing(v):
            continue
        if label_map is not None:
            cls = label_map.get(str(v))
        elif isinstance(v, (bool, int, float, np.number, np.bool_)):
            cls = None
        else:
            cls = _class_name(v)
        if cls is None:
            unknown[str(v)] = unknown.get(str(v), 0) + 1
            continue
        y[i] = cls == schema.FAKE
        labelled[i] = True
    if unknown:
        shown = ", ".join(f"{k!r} ({n})" for k, n in sorted(unknown.items())[:6])
        hint = (
            "; numeric and boolean labels need an explicit map, e.g. --label-map 1=Fake,0=Real"
            if label_map is None
            else f"; the label map knows {sorted(label_map)}"
        )
        raise EvaluationError(f"labels that are neither Fake nor Real: {shown}{hint}")
    return y, labelled


def _missing(value: Any) -> bool:
    """A null label or score: None, NaN or an empty string."""
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


@dataclass
class LabelledSample:
    """The scored, labelled rows of a source (unscored and unlabelled rows are counted, not kept)."""

    y: np.ndarray  # 1 Fake / 0 Real
    p: np.ndarray  # fake_prob as scored (calibrated if the scorer had a calibration)
    gap: np.ndarray  # raw logit gap fake_logit - real_logit (before any calibration)
    rows: np.ndarray  # row index in the source
    names: list[str | None]
    groups: list[str | None]
    n_rows: int = 0
    n_unlabelled: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # rows that could not be scored
    gap_from_logits: bool = True  # False: gaps recovered from float32 probabilities (clipped)
    model: str | None = None  # the model the scores were made with (None: not recorded)
    calibration: Calibration | None = None  # the calibration the scores were made with
    revision: str | None = None  # the model revision, when recorded
    stored_scores: bool = False  # True: read from the source as stored, not scored here
    scoring: StoredScoring | None = None  # all that made the scores (ensemble, head, labels)
    member_p: np.ndarray | None = None  # an ensemble's per-member fake_prob, one column each

    def __len__(self) -> int:
        return len(self.y)


def _folder_label(image: Any) -> str | None:
    """A folder source's label: the top-level folder of the image's relative path."""
    path = image.get("path") if isinstance(image, dict) else image
    if not isinstance(path, str):
        return None
    parts = path.replace("\\", "/").split("/")
    return parts[0] if len(parts) > 1 else None


def _parent_folder(image: Any) -> str | None:
    """A folder source's default group: the image's parent folder (`fake/gen_a`)."""
    path = image.get("path") if isinstance(image, dict) else image
    if not isinstance(path, str) or "/" not in path.replace("\\", "/"):
        return None
    return path.replace("\\", "/").rsplit("/", 1)[0]


def collect_labelled(
    source: Source,
    label_column: str,
    *,
    scorer: DeepfakeScorer | None = None,
    label_map: Mapping[str, str] | None = None,
    group_column: str | None = None,
    batch_size: int = 64,
    rescore: bool = False,
    progress: Callable[[int], None] | None = None,
) -> LabelledSample:
    """Read labels and scores from a `curate.sources.Source`.

    Rows that already carry `fake_prob` (a file written by `curate score`) are used as they
    are unless `rescore`; otherwise the images go through `scorer.score_images` (built with
    `with_logits=True` so a calibration can be fitted on exact logit gaps), and without a
    scorer that is an error. The sample records the model and calibration its scores were
    made with: the scorer's when it scored them, the file's metadata when they were stored.
    For a folder of images the label is each image's top-level folder (`fake/x.jpg`,
    `real/y.png`) and the group its parent folder, unless the batch has a column of that
    name. `progress(k)` is called after each batch of `k` rows."""
    if label_column is None:
        raise ValueError("a label column is required")
    img_col = source.image_column
    labels: list[Any] = []
    probs: list[float] = []
    gaps: list[float] = []
    rows: list[int] = []
    names: list[str | None] = []
    groups: list[str | None] = []
    errors: list[dict[str, Any]] = []
    members: list[Any] = []  # each kept row's `member_fake_probs` (None where absent)
    n_rows = n_unlabelled = 0
    from_logits = stored_scores = True
    scoring: StoredScoring | None = None  # set by the first batch: stored or scored here
    names_of = _class_label_names(source, label_column)
    for batch in source.batches(batch_size):
        images = batch.get(img_col, [])
        k = len(next(iter(batch.values()))) if batch else 0
        raw = _batch_labels(source, batch, label_column, images, names_of)
        if group_column is not None and group_column not in batch:
            raise EvaluationError(f"no group column {group_column!r} in the source")
        grp = batch[group_column] if group_column else [_parent_folder(im) for im in images]
        stored = schema.FAKE_PROB in batch and not rescore  # the same for every batch
        if scoring is None:
            scoring = _scoring(source, scorer, stored)
            stored_scores = stored
        if stored:
            fp = batch[schema.FAKE_PROB]
            err = batch.get(schema.ERROR, [None] * k)
            logits = [batch.get(c) for c in schema.LOGIT_COLUMNS]
            member_probs = batch.get(schema.MEMBER_PROBS)
        else:
            out = scorer.score_images(images)
            fp, err = out[schema.FAKE_PROB], out[schema.ERROR]
            logits = [out.get(c) for c in schema.LOGIT_COLUMNS]
            member_probs = out.get(schema.MEMBER_PROBS)
        if all(c is not None for c in logits):
            g = [None if a is None or b is None else a - b for a, b in zip(*logits, strict=True)]
        else:
            from_logits = False
            g = [
                None if _missing(v) else float(gap_from_prob([v], scoring.calibration)[0])
                for v in fp
            ]
        for i in range(k):
            row = n_rows + i
            name = images[i].get("path") if isinstance(images[i], dict) else None
            if name is None and isinstance(images[i], str):
                name = images[i]
            if _missing(raw[i]):
                n_unlabelled += 1
                continue
            if _missing(fp[i]) or g[i] is None:
                errors.append({"row": row, "image": name, "error": err[i] or "no score"})
                continue
            labels.append(raw[i])
            probs.append(float(fp[i]))
            gaps.append(float(g[i]))
            rows.append(row)
            names.append(name)
            groups.append(None if grp[i] is None else str(grp[i]))
            members.append(None if member_probs is None else member_probs[i])
        n_rows += k
        if progress is not None:
            progress(k)
    y, _ = encode_labels(labels, label_map)
    scoring = scoring or StoredScoring()
    return LabelledSample(
        y=y,
        p=np.asarray(probs, dtype=np.float64),
        gap=np.asarray(gaps, dtype=np.float64),
        rows=np.asarray(rows, dtype=np.int64),
        names=names,
        groups=groups,
        n_rows=n_rows,
        n_unlabelled=n_unlabelled,
        errors=errors,
        gap_from_logits=from_logits,
        model=scoring.model,
        calibration=scoring.calibration,
        revision=scoring.revision,
        stored_scores=stored_scores,
        scoring=scoring,
        member_p=_member_matrix(members),
    )


def _member_matrix(members: list[Any]) -> np.ndarray | None:
    """Rows x members of per-member fake_prob, if every kept row has them all."""
    if not members or any(m is None or any(_missing(v) for v in m) for m in members):
        return None
    if len({len(m) for m in members}) != 1:
        return None
    return np.asarray(members, dtype=np.float64)


def _batch_labels(
    source: Source,
    batch: Mapping[str, list],
    label_column: str,
    images: list[Any],
    names_of: list[str] | None,
) -> list[Any]:
    if label_column in batch:
        raw = batch[label_column]
        if names_of is not None:  # a datasets ClassLabel: its ids stand for these names
            raw = [None if v is None or v < 0 else names_of[v] for v in raw]
        return raw
    if source.kind in ("folder", "image"):
        return [_folder_label(im) for im in images]
    raise EvaluationError(
        f"no label column {label_column!r} in the source (columns: {', '.join(batch)})"
    )


def _scoring(source: Source, scorer: DeepfakeScorer | None, stored: bool) -> StoredScoring:
    """Who made the scores: the file's recorded settings when stored, else the scorer."""
    if stored:
        if source.kind != "parquet":
            return StoredScoring()
        return read_stored_scoring(source.identity["files"][0][0])
    if scorer is None:
        raise EvaluationError(
            f"the source has no {schema.FAKE_PROB!r} column to read scores from (or rescoring "
            "was asked): pass a scorer to score its images"
        )
    return scoring_of(scorer)


def _class_label_names(source: Source, column: str) -> list[str] | None:
    features = getattr(source, "features", None)
    try:
        feature = features[column] if features is not None else None
    except (KeyError, TypeError):
        return None
    names = getattr(feature, "names", None)
    return list(names) if isinstance(names, list) and names else None


def sample_from_columns(
    labels: Sequence[Any],
    fake_prob: Sequence[float | None],
    *,
    fake_logit: Sequence[float | None] | None = None,
    real_logit: Sequence[float | None] | None = None,
    label_map: Mapping[str, str] | None = None,
    names: Sequence[str | None] | None = None,
    groups: Sequence[str | None] | None = None,
    model: str | None = None,
    calibration: Calibration | None = None,
) -> LabelledSample:
    """A `LabelledSample` from columns already in hand (say, a `datasets.Dataset` after
    `ds.map(scorer)`): rows without a label or a score are counted and left out."""
    n = len(labels)
    if len(fake_prob) != n:
        raise ValueError(f"{n} labels but {len(fake_prob)} scores")
    keep = [i for i in range(n) if not _missing(labels[i]) and not _missing(fake_prob[i])]
    kept = set(keep)
    unlabelled = sum(1 for v in labels if _missing(v))
    y, _ = encode_labels([labels[i] for i in keep], label_map)
    p = np.asarray([fake_prob[i] for i in keep], dtype=np.float64)
    if fake_logit is not None and real_logit is not None:
        gap = np.asarray([fake_logit[i] - real_logit[i] for i in keep], dtype=np.float64)
    else:
        gap = gap_from_prob(p, calibration)
    return LabelledSample(
        y=y,
        p=p,
        gap=gap,
        rows=np.asarray(keep, dtype=np.int64),
        names=[names[i] for i in keep] if names is not None else [None] * len(keep),
        groups=[groups[i] for i in keep] if groups is not None else [None] * len(keep),
        n_rows=n,
        n_unlabelled=unlabelled,
        errors=[
            {"row": i, "image": names[i] if names is not None else None, "error": "no score"}
            for i in range(n)
            if not _missing(labels[i]) and i not in kept
        ],
        gap_from_logits=fake_logit is not None and real_logit is not None,
        model=model,
        calibration=calibration,
        stored_scores=True,
    )
