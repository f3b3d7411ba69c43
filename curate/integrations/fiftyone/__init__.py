"""FiftyOne adapter: score sample collections with `DeepfakeScorer`, act on the scores, export.

- `scoring`: `score_samples` reads each sample's `filepath`, hands chunks of paths to
  `DeepfakeScorer.score_images` and writes what it returns back by sample id (`fake_prob`
  float, `deepfake` Classification, `deepfake_error`, an ensemble's `member_fake_probs`,
  provenance evidence when asked).
- `models`: `model_problem`, the scoring form's model check, in the App's words.
- `decisions`: `apply_decision` turns a `curate.filtering.DecisionRule` into tags, a saved
  view or deletions, through MongoDB expressions derived from the rule; writes each sample's
  outcome to `deepfake_decision` and records the rule on the dataset (`last_decision`).
- `export`: `export_parquet` writes a view through `curate.io.parquet.write_parquet`, on a
  path that is checked first (`path_problem`, `$CURATE_EXPORT_ROOT`); `iter_export_parquet`
  streams its progress.
- `review`: what the App's review panel shows (histograms, ensemble members, label metrics).
- `fields`, `colors`, `wording`: field names and types, the App colours of the labels, and how
  counts and rules are put in words.

The plugin in `plugins/curate` is a thin front end over these. `import fiftyone` happens
inside the functions, so importing this package does not start FiftyOne's database.
"""

from curate.integrations.fiftyone.colors import DECISION_COLORS, LABEL_COLORS, set_value_colors
from curate.integrations.fiftyone.decisions import (
    ACTIONS,
    KEPT_VIEW,
    REMOVE_TAG,
    REVIEW_TAG,
    UNSCORED_TAG,
    AppliedDecision,
    DecisionSummary,
    apply_decision,
    check_rule_fields,
    count_decisions,
    decision_expressions,
    decision_views,
    last_decision,
    outcome_view,
    parse_float,
    rule_from_settings,
    rule_settings,
    scored_expression,
    selected_by,
)
from curate.integrations.fiftyone.export import (
    EXPORT_ROOT_ENV,
    ExportPathError,
    ExportProgress,
    export_parquet,
    export_root,
    iter_export_parquet,
    path_problem,
)
from curate.integrations.fiftyone.fields import (
    DECISION_FIELD,
    ERROR_FIELD,
    INFO_KEY,
    LABEL_FIELD,
    MEMBERS_FIELD,
    PROB_FIELD,
    PROVENANCE_FIELDS,
    FieldConflictError,
    check_fields,
    field_problem,
    field_type,
)
from curate.integrations.fiftyone.models import model_problem
from curate.integrations.fiftyone.review import (
    Histogram,
    LabelMetrics,
    MemberSummary,
    fit_band,
    label_fields,
    label_metrics,
    member_summaries,
    score_histogram,
)
from curate.integrations.fiftyone.scoring import (
    ScoreProgress,
    ScoreSummary,
    ensemble_members,
    iter_score_samples,
    label_field_of,
    pending_samples,
    score_samples,
    scoring_settings,
)
from curate.integrations.fiftyone.wording import count, counts_sentence, rule_steps

__all__ = [
    "ACTIONS",
    "DECISION_COLORS",
    "DECISION_FIELD",
    "ERROR_FIELD",
    "EXPORT_ROOT_ENV",
    "INFO_KEY",
    "KEPT_VIEW",
    "LABEL_COLORS",
    "LABEL_FIELD",
    "MEMBERS_FIELD",
    "PROB_FIELD",
    "PROVENANCE_FIELDS",
    "REMOVE_TAG",
    "REVIEW_TAG",
    "UNSCORED_TAG",
    "AppliedDecision",
    "DecisionSummary",
    "ExportPathError",
    "ExportProgress",
    "FieldConflictError",
    "Histogram",
    "LabelMetrics",
    "MemberSummary",
    "ScoreProgress",
    "ScoreSummary",
    "apply_decision",
    "check_fields",
    "check_rule_fields",
    "count",
    "count_decisions",
    "counts_sentence",
    "decision_expressions",
    "decision_views",
    "ensemble_members",
    "export_parquet",
    "export_root",
    "field_problem",
    "field_type",
    "fit_band",
    "iter_export_parquet",
    "iter_score_samples",
    "label_field_of",
    "label_fields",
    "label_metrics",
    "last_decision",
    "member_summaries",
    "model_problem",
    "outcome_view",
    "parse_float",
    "path_problem",
    "pending_samples",
    "rule_from_settings",
    "rule_settings",
    "rule_steps",
    "score_histogram",
    "score_samples",
    "scored_expression",
    "selected_by",
    "set_value_colors",
    "scoring_settings",
]
