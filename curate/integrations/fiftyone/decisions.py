"""`curate.filtering.DecisionRule` on FiftyOne samples: views, counts, tags, decisions, deletions.

FiftyOne selects samples with MongoDB expressions, so the rule is translated here; every
number and choice comes from the `DecisionRule` object (`keep_below`, `remove_from`,
`unscored_outcome`, the provenance options), applied in the same order as
`DecisionRule.decide_many`, and the tests check the two agree sample for sample.

`apply_decision` also writes each sample's outcome to the `deepfake_decision` field (what a tile
shows) and records the rule on the dataset (`last_decision`), so an export can default to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from curate import schema
from curate.filtering import KEEP, OUTCOMES, REMOVE, REVIEW, UNSCORED, DecisionRule
from curate.integrations.fiftyone.colors import DECISION_COLORS, set_value_colors
from curate.integrations.fiftyone.fields import (
    DECISION_FIELD,
    DECISION_KEY,
    INFO_KEY,
    PROB_FIELD,
    FieldConflictError,
    declare,
    field_problem,
)

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection
    from fiftyone.core.expressions import ViewExpression

REMOVE_TAG = "synthetic"
REVIEW_TAG = "deepfake_review"
UNSCORED_TAG = "deepfake_unscored"
KEPT_VIEW = "deepfake_kept"
ACTIONS = ("tag", "save_view", "delete")


def parse_float(value: Any, name: str) -> float:
    """A probability from a form or CLI value, with a one-line error when it is not one."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if math.isnan(f) or not 0.0 <= f <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return f


def _assign(exprs: dict[str, ViewExpression], rows: ViewExpression, outcome: str) -> None:
    """`decide_many`'s `out[rows] = outcome`: `rows` leave whatever outcome they had."""
    for other in OUTCOMES:
        if other != outcome:
            exprs[other] = exprs[other] & ~rows
    exprs[outcome] = exprs[outcome] | rows


def scored_expression(prob_field: str = PROB_FIELD) -> ViewExpression:
    """True for exactly the samples with a score: null, missing and NaN sort below every
    number in MongoDB, so `>= -inf` holds for the scored ones only (and a bare
    `fake_prob < t` would also match every unscored sample)."""
    from fiftyone import ViewField as F

    return F(prob_field) >= float("-inf")


def decision_expressions(
    rule: DecisionRule, prob_field: str = PROB_FIELD
) -> dict[str, ViewExpression]:
    """One `ViewExpression` per outcome ("keep", "remove", "review", "unscored") that selects
    exactly the samples `rule.decide_many` gives that outcome. A sample is scored when its
    value is a number other than NaN (`scored_expression`)."""
    from fiftyone import ViewExpression as E
    from fiftyone import ViewField as F

    p = F(prob_field)
    scored = scored_expression(prob_field)
    says = F(schema.PROVENANCE_SYNTHETIC)
    # Every sample starts in review; then the steps of `decide_many`, in its order.
    exprs = {o: E(o == REVIEW) for o in OUTCOMES}
    _assign(exprs, scored & (p < rule.keep_below), KEEP)
    _assign(exprs, scored & (p >= rule.remove_from), REMOVE)
    if rule.review_conflicts:
        # Evidence that disagrees with the score sends the sample to review.
        _assign(exprs, exprs[KEEP] & says.is_in([True]), REVIEW)
        _assign(exprs, exprs[REMOVE] & says.is_in([False]), REVIEW)
    _assign(exprs, ~scored, rule.unscored_outcome)
    if rule.remove_strong_evidence:
        _assign(exprs, F(schema.PROVENANCE_STRONG).is_in([True]), REMOVE)
    return exprs


def decision_views(
    samples: SampleCollection, rule: DecisionRule, prob_field: str = PROB_FIELD
) -> dict[str, SampleCollection]:
    """The samples of each outcome, as views of `samples` (empty views included)."""
    return {o: samples.match(e) for o, e in decision_expressions(rule, prob_field).items()}


def count_decisions(
    samples: SampleCollection, rule: DecisionRule, prob_field: str = PROB_FIELD
) -> dict[str, int]:
    """How many samples get each outcome (computed in the database; zeros included)."""
    return {o: v.count() for o, v in decision_views(samples, rule, prob_field).items()}


def selected_by(
    samples: SampleCollection,
    rule: DecisionRule,
    outcomes: tuple[str, ...] | list[str],
    prob_field: str = PROB_FIELD,
) -> SampleCollection:
    """The samples whose outcome under `rule` is one of `outcomes`."""
    bad = [o for o in outcomes if o not in OUTCOMES]
    if bad:
        raise ValueError(f"unknown outcome(s) {bad}; choose from {', '.join(OUTCOMES)}")
    if not outcomes:
        return samples.limit(0)
    exprs = decision_expressions(rule, prob_field)
    expr = exprs[outcomes[0]]
    for o in outcomes[1:]:
        expr = expr | exprs[o]
    return samples.match(expr)


def outcome_view(
    samples: SampleCollection, rule: DecisionRule, outcome: str, prob_field: str = PROB_FIELD
) -> SampleCollection:
    """The samples of one outcome, borderline first: scored ones sorted by how close their
    score is to the rule's threshold (a curator pages through the hardest calls first)."""
    from fiftyone import ViewField as F

    view = selected_by(samples, rule, [outcome], prob_field)
    if outcome == UNSCORED:
        return view
    return view.sort_by((F(prob_field) - rule.threshold).abs())


def check_rule_fields(samples: SampleCollection, rule: DecisionRule, prob_field: str) -> None:
    """Raise ValueError when the dataset lacks a field `rule` reads."""
    dataset = samples._dataset
    if not dataset.has_sample_field(prob_field):
        raise ValueError(
            f"the dataset has no {prob_field!r} field; score it first (detect_deepfakes)"
        )
    if rule.uses_provenance and not dataset.has_sample_field(schema.PROVENANCE_STRONG):
        raise ValueError(
            "the rule uses provenance evidence but the dataset has no provenance fields; "
            "score it with provenance on (detect_deepfakes, 'Provenance evidence')"
        )


@dataclass
class DecisionSummary:
    """What `apply_decision` did: outcome counts and the action taken."""

    counts: dict[str, int] = field(default_factory=dict)
    action: str = "tag"
    deleted: int = 0
    saved_view: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # outcome -> tag applied
    decision_field: str | None = None  # the field each sample's outcome was written to


# -- the rule recorded on the dataset -----------------------------------------------------------
def rule_settings(rule: DecisionRule) -> dict[str, Any]:
    """`rule` as plain JSON values (the inverse of `rule_from_settings`)."""
    return {
        "threshold": rule.threshold,
        "review_band": list(rule.review_band) if rule.review_band else None,
        "unscored": rule.unscored,
        "remove_strong_evidence": rule.remove_strong_evidence,
        "review_conflicts": rule.review_conflicts,
    }


def rule_from_settings(settings: dict[str, Any]) -> DecisionRule:
    band = settings.get("review_band")
    return DecisionRule(
        settings["threshold"],
        review_band=tuple(band) if band else None,
        unscored=settings.get("unscored", "separate"),
        remove_strong_evidence=bool(settings.get("remove_strong_evidence", False)),
        review_conflicts=bool(settings.get("review_conflicts", False)),
    )


@dataclass(frozen=True)
class AppliedDecision:
    """The last rule `apply_decision` applied to a score field, as recorded on the dataset."""

    rule: DecisionRule
    prob_field: str
    applied_at: str  # ISO 8601, UTC
    samples: int  # how many samples it was applied to
    decision_field: str | None

    @property
    def when(self) -> str:
        """When it was applied, to the minute, for a form ("2026-12-01 18:02 UTC")."""
        try:
            return datetime.fromisoformat(self.applied_at).strftime("%Y-%m-%d %H:%M UTC")
        except ValueError:
            return self.applied_at


def last_decision(
    samples: SampleCollection, prob_field: str = PROB_FIELD
) -> AppliedDecision | None:
    """The rule last applied to `prob_field`'s scores on this dataset, or None (never applied,
    or the record cannot be read as a rule)."""
    info = (samples._dataset.info.get(INFO_KEY) or {}).get(prob_field) or {}
    record = info.get(DECISION_KEY)
    if not isinstance(record, dict):
        return None
    try:
        rule = rule_from_settings(record)
    except (KeyError, TypeError, ValueError):
        return None
    return AppliedDecision(
        rule,
        prob_field,
        str(record.get("applied_at", "")),
        int(record.get("samples", 0)),
        record.get("decision_field"),
    )


def _record_decision(
    dataset, rule: DecisionRule, prob_field: str, n: int, decision_field: str | None
) -> None:
    info = dict(dataset.info.get(INFO_KEY) or {})
    entry = dict(info.get(prob_field) or {})
    entry[DECISION_KEY] = {
        **rule_settings(rule),
        "applied_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "samples": n,
        "decision_field": decision_field,
    }
    info[prob_field] = entry
    dataset.info[INFO_KEY] = info
    dataset.save()


def _write_outcomes(dataset, views: dict[str, SampleCollection], decision_field: str) -> None:
    """Each sample's outcome as a Classification (its own label id, so the App can select it)."""
    import fiftyone as fo

    declare(dataset, decision_field, "decision")
    values = {}
    for outcome, view in views.items():
        for sample_id in view.values("id"):
            values[sample_id] = fo.Classification(label=outcome)
    if values:
        dataset.set_values(decision_field, values, key_field="id")
    set_value_colors(dataset, decision_field, DECISION_COLORS)


def apply_decision(
    samples: SampleCollection,
    rule: DecisionRule,
    *,
    action: Literal["tag", "save_view", "delete"] = "tag",
    prob_field: str = PROB_FIELD,
    remove_tag: str = REMOVE_TAG,
    review_tag: str = REVIEW_TAG,
    unscored_tag: str = UNSCORED_TAG,
    view_name: str = KEPT_VIEW,
    confirm_delete: bool = False,
    decision_field: str | None = DECISION_FIELD,
) -> DecisionSummary:
    """Act on `rule`'s decisions for `samples`.

    - "tag" (non-destructive): samples to remove get `remove_tag`.
    - "save_view": the kept samples are saved as the dataset view `view_name` (a live
      `match` on `prob_field`, overwritten if it exists).
    - "delete": the samples to remove are deleted from the dataset; refuses unless
      `confirm_delete=True`.

    Whatever the action, review samples get `review_tag` and set-apart unscored samples
    `unscored_tag`. Before tagging, these tags are removed from `samples`, so after a re-run
    with another threshold they describe the current rule only. Each sample of `samples` gets
    its outcome ("keep", "remove", "review", "unscored") in `decision_field` (a Classification
    the App draws on tiles in the `DECISION_COLORS`; None: not written), and the rule is
    recorded on the dataset (`last_decision`).
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}; got {action!r}")
    if action == "delete" and not confirm_delete:
        raise ValueError("deleting samples needs an explicit confirmation (confirm_delete=True)")
    if action == "save_view" and not (view_name and view_name.strip()):
        raise ValueError("a saved view needs a name")
    check_rule_fields(samples, rule, prob_field)
    if decision_field is not None:
        problem = field_problem(samples, decision_field, "decision")
        if problem:
            raise FieldConflictError(problem)
    views = decision_views(samples, rule, prob_field)
    summary = DecisionSummary(counts={o: len(v) for o, v in views.items()}, action=action)
    tags = {REVIEW: review_tag, UNSCORED: unscored_tag}
    if action == "tag":
        tags[REMOVE] = remove_tag
    stale = [t for t in tags.values() if t]
    if stale:
        samples.untag_samples(stale)
    for outcome, tag in tags.items():
        if tag and summary.counts[outcome]:
            views[outcome].tag_samples(tag)
            summary.tags[outcome] = tag
    dataset = samples._dataset
    if decision_field is not None:
        _write_outcomes(dataset, views, decision_field)
        summary.decision_field = decision_field
    _record_decision(dataset, rule, prob_field, sum(summary.counts.values()), decision_field)
    if action == "save_view":
        samples._dataset.save_view(view_name, views[KEEP], overwrite=True)
        summary.saved_view = view_name
    elif action == "delete":
        summary.deleted = summary.counts[REMOVE]
        if summary.deleted:
            samples._dataset.delete_samples(views[REMOVE])
    return summary
