"""FiftyOne adapter: score sample collections with `DeepfakeScorer`, act on the scores, export.

- `scoring`: `score_samples` reads each sample's `filepath`, hands chunks of paths to
  `DeepfakeScorer.score_images` and writes what it returns back by sample id (`fake_prob`
  float, `deepfake` Classification, `deepfake_error`, provenance evidence when asked).
- `decisions`: `apply_decision` turns a `curate.filtering.DecisionRule` into tags, a saved
  view or deletions, through MongoDB expressions derived from the rule.
- `export`: `export_parquet` writes a view through `curate.io.parquet.write_parquet`, on a
  path that is checked first (`path_problem`, `$CURATE_EXPORT_ROOT`).
- `fields`: the field names (from `curate.schema`), their FiftyOne types and checks.

The plugin in `plugins/curate` is a thin front end over these. `import fiftyone` happens
inside the functions, so importing this package does not start FiftyOne's database.
"""

from curate.integrations.fiftyone.decisions import (
    ACTIONS,
    KEPT_VIEW,
    REMOVE_TAG,
    REVIEW_TAG,
    UNSCORED_TAG,
    DecisionSummary,
    apply_decision,
    check_rule_fields,
    count_decisions,
    decision_expressions,
    decision_views,
    parse_float,
    selected_by,
)
from curate.integrations.fiftyone.export import (
    EXPORT_ROOT_ENV,
    ExportPathError,
    export_parquet,
    export_root,
    path_problem,
)
from curate.integrations.fiftyone.fields import (
    ERROR_FIELD,
    LABEL_FIELD,
    PROB_FIELD,
    PROVENANCE_FIELDS,
    FieldConflictError,
    check_fields,
    field_problem,
    field_type,
)
from curate.integrations.fiftyone.scoring import (
    INFO_KEY,
    ScoreProgress,
    ScoreSummary,
    iter_score_samples,
    model_problem,
    pending_samples,
    score_samples,
    scoring_settings,
)

__all__ = [
    "ACTIONS",
    "ERROR_FIELD",
    "EXPORT_ROOT_ENV",
    "INFO_KEY",
    "KEPT_VIEW",
    "LABEL_FIELD",
    "PROB_FIELD",
    "PROVENANCE_FIELDS",
    "REMOVE_TAG",
    "REVIEW_TAG",
    "UNSCORED_TAG",
    "DecisionSummary",
    "ExportPathError",
    "FieldConflictError",
    "ScoreProgress",
    "ScoreSummary",
    "apply_decision",
    "check_fields",
    "check_rule_fields",
    "count_decisions",
    "decision_expressions",
    "decision_views",
    "export_parquet",
    "export_root",
    "field_problem",
    "field_type",
    "iter_score_samples",
    "model_problem",
    "parse_float",
    "path_problem",
    "pending_samples",
    "score_samples",
    "scoring_settings",
    "selected_by",
]
