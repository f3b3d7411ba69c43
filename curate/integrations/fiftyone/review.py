"""What the App's Deepfake review panel shows, computed from a view: the score histogram, the
per-member figures of an ensemble, the metrics against a label field, and the threshold and
review band kept consistent while sliders move.

The panel (`plugins/curate/panel.py`) draws these; the counts and groups are
`decisions.count_decisions` / `decisions.outcome_view`, and the metrics are `curate eval`'s own
(`curate.evaluation.compute_metrics` on labels read by `encode_labels`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from curate import schema
from curate.filtering import OUTCOMES, DecisionRule
from curate.integrations.fiftyone.decisions import scored_expression
from curate.integrations.fiftyone.fields import (
    DECISION_FIELD,
    ERROR_FIELD,
    LABEL_FIELD,
    MEMBERS_FIELD,
    PROB_FIELD,
)

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection

    from curate.evaluation import Metrics

STEP = 0.01  # slider step; histogram bins are this wide, so a threshold is always a bin edge
BINS = round(1 / STEP)


def bin_lefts(bins: int = BINS) -> list[float]:
    """The left edges of `bins` equal bins over [0, 1] (k / bins, exactly as the slider and the
    rule write them); the last bin also holds a score of exactly 1."""
    return [k / bins for k in range(bins)]


@dataclass
class Histogram:
    """Counts of scores per bin: bin i holds `lefts[i] <= score < lefts[i + 1]`."""

    lefts: list[float]
    counts: list[int]

    @property
    def total(self) -> int:
        return int(sum(self.counts))


def score_histogram(
    samples: SampleCollection, prob_field: str = PROB_FIELD, bins: int = BINS, value=None
) -> Histogram:
    """Histogram of the scores of `samples`, counted in the database (unscored samples left
    out). `value` histograms another expression of each scored sample instead (an ensemble
    member's score: `F("$member_fake_probs")[j]`).

    A bin index is the number of left edges at or below the score, so a score exactly on an
    edge lands in the bin a `DecisionRule` threshold at that edge starts (FiftyOne's own
    `histogram_values` computes its edges by `linspace`, a hair off `k / bins`)."""
    from fiftyone import ViewExpression as E
    from fiftyone import ViewField as F

    lefts = bin_lefts(bins)
    value = F("$" + prob_field) if value is None else value
    index = E(lefts).filter(F() <= value).length() - 1
    found = samples.match(scored_expression(prob_field)).count_values(index)
    counts = [0] * bins
    for k, n in found.items():
        if k is not None and 0 <= int(k) < bins:  # -1: no value (a member's null score)
            counts[int(k)] += int(n)
    return Histogram(lefts, counts)


@dataclass
class MemberSummary:
    """One ensemble member's scores over the view."""

    model: str
    mean: float | None
    histogram: Histogram


def member_summaries(
    samples: SampleCollection,
    members: list[str],
    prob_field: str = PROB_FIELD,
    members_field: str = MEMBERS_FIELD,
    bins: int = BINS,
) -> list[MemberSummary]:
    """Per member of the ensemble that wrote `prob_field` (`members`, in `members_field` order):
    its mean score and histogram over the scored samples of `samples`; [] when the dataset has
    no such field."""
    from fiftyone import ViewField as F

    if not members or not samples._dataset.has_sample_field(members_field):
        return []
    scored = samples.match(scored_expression(prob_field))
    out = []
    for j, model in enumerate(members):
        value = F("$" + members_field)[j]
        mean = scored.mean(F(members_field)[j]) if len(scored) else None
        out.append(MemberSummary(model, mean, score_histogram(samples, prob_field, bins, value)))
    return out


# -- threshold and band -------------------------------------------------------------------------
Moved = Literal["threshold", "low", "high"]


def fit_band(threshold: float, low: float, high: float, moved: Moved) -> tuple[float, float, float]:
    """(threshold, low, high) on the slider grid with `low < high` and `low <= threshold <= high`
    (what `DecisionRule` requires), keeping the value the user just `moved` and pushing the
    others out of its way."""

    def snap(x: float) -> float:
        return round(min(max(float(x), 0.0), 1.0) / STEP) * STEP

    t, lo, hi = (round(snap(x), 6) for x in (threshold, low, high))
    if moved == "threshold":
        lo, hi = min(lo, t), max(hi, t)
        if lo == hi:  # the band cannot be empty: open it on the side that has room
            lo, hi = (lo - STEP, hi) if hi >= 1.0 else (lo, hi + STEP)
    elif moved == "low":
        lo = min(lo, 1.0 - STEP)
        t, hi = max(t, lo), max(hi, lo + STEP)
    else:
        hi = max(hi, STEP)
        t, lo = min(t, hi), min(lo, hi - STEP)
    return tuple(round(x, 6) for x in (t, lo, hi))  # type: ignore[return-value]


# -- metrics against labels ---------------------------------------------------------------------
# Fields a label field cannot be: curate's own outputs.
OWN_FIELDS = (PROB_FIELD, LABEL_FIELD, ERROR_FIELD, DECISION_FIELD, MEMBERS_FIELD)


def label_fields(samples: SampleCollection) -> list[str]:
    """Paths that can hold ground truth: string, boolean and integer fields, and the `label` of
    Classification fields (curate's own fields left out)."""
    import fiftyone as fo

    out = []
    for name, f in samples.get_field_schema().items():
        if name in OWN_FIELDS or name in ("id", "filepath", "tags") or name.startswith("_"):
            continue
        if isinstance(f, fo.EmbeddedDocumentField) and f.document_type is fo.Classification:
            out.append(f"{name}.label")
        elif isinstance(f, (fo.StringField, fo.BooleanField, fo.IntField)):
            out.append(name)
    return sorted(out)


@dataclass
class LabelMetrics:
    """`curate eval`'s metrics for a rule's threshold on the labelled, scored samples of a view,
    and how the rule's outcomes split each true class."""

    label_path: str
    metrics: Metrics | None = None
    labelled: int = 0  # samples with a label and a score (what the metrics use)
    unlabelled: int = 0
    unscored: int = 0  # labelled but not scored
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)  # Fake/Real -> outcomes
    error: str | None = None  # why there are no metrics


def label_metrics(
    samples: SampleCollection,
    rule: DecisionRule,
    label_path: str,
    prob_field: str = PROB_FIELD,
    label_map: Mapping[str, str] | str | None = None,
) -> LabelMetrics:
    """Metrics of `prob_field` against the ground truth in `label_path` (Fake/Real names, or
    other values through `label_map`, as `curate eval --label-map`), at `rule.threshold`."""
    from curate.evaluation import EvaluationError, compute_metrics, encode_labels, parse_label_map

    result = LabelMetrics(label_path)
    names = [prob_field, label_path]
    if rule.uses_provenance:
        names += [schema.PROVENANCE_SYNTHETIC, schema.PROVENANCE_STRONG]
    try:
        columns = samples.values(names)
        y, labelled = encode_labels(columns[1], parse_label_map(label_map))
    except (EvaluationError, ValueError) as exc:
        result.error = str(exc)
        return result
    probs = columns[0]
    p = np.array([np.nan if v is None else v for v in probs], dtype=np.float64)
    outcomes = rule.decide_many(probs, *columns[2:])
    scored = ~np.isnan(p)
    result.unlabelled = int((~labelled).sum())
    result.unscored = int((labelled & ~scored).sum())
    for cls, value in ((schema.FAKE, 1), (schema.REAL, 0)):
        rows = labelled & (y == value)
        result.by_class[cls] = {o: int((outcomes[rows] == o).sum()) for o in OUTCOMES}
    use = labelled & scored
    result.labelled = int(use.sum())
    if not result.labelled:
        result.error = f"no sample of this view has both a score and a label in {label_path!r}"
        return result
    result.metrics = compute_metrics(y[use], p[use], rule.threshold)
    return result
