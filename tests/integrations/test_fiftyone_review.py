"""What the FiftyOne adapter adds for curators, on a real FiftyOne database: the labels'
colours, the decision written onto samples and recorded on the dataset, the review panel's
figures (histogram, groups, ensemble members, `curate eval` metrics, threshold and band kept
consistent), the model check in the App's words, the export's streamed progress, and the
wording of counts and rules."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SPREAD

fo = pytest.importorskip("fiftyone")

from curate import DeepfakeScorer  # noqa: E402
from curate.evaluation import compute_metrics, encode_labels  # noqa: E402
from curate.filtering import OUTCOMES, DecisionRule  # noqa: E402
from curate.integrations import fiftyone as cfo  # noqa: E402
from curate.integrations.fiftyone.review import STEP  # noqa: E402
from curate.integrations.fiftyone.wording import count, rule_steps, threshold_help  # noqa: E402
from curate.testing import build_random_checkpoint  # noqa: E402


@pytest.fixture
def scores_dataset(photo_paths):
    """Scores on every bin edge that matters, a score of exactly 1, and unscored forms."""
    values = [0.0, 0.005, 0.29, 0.3, 0.37, 0.5, 0.5, 0.69, 0.7, 0.999, 1.0, None, math.nan]
    ds = fo.Dataset()
    cfo.check_fields(ds)
    ds.add_samples([fo.Sample(filepath=photo_paths[0]) for _ in values])
    ds.set_values(cfo.PROB_FIELD, values)
    yield ds
    ds.delete()


def _colors(ds) -> dict[str, dict[str, str]]:
    scheme = ds.app_config.color_scheme
    return {
        f["path"]: {v["value"]: v["color"] for v in f.get("valueColors", [])} for f in scheme.fields
    }


# -- colours -------------------------------------------------------------------------------------
def test_fake_and_real_get_distinct_colours_when_scored(photo_paths, tiny_checkpoint):
    ds = fo.Dataset()
    try:
        # someone's own colour for another field stays
        ds.app_config.color_scheme = fo.ColorScheme(fields=[{"path": "gt", "fieldColor": "#111"}])
        ds.add_samples([fo.Sample(filepath=p) for p in photo_paths[:2]])
        cfo.score_samples(ds, DeepfakeScorer(tiny_checkpoint))
        ds.reload()
        colors = _colors(ds) | {}
        assert colors["deepfake"] == {"Fake": "#D55E00", "Real": "#0072B2"}
        assert len(set(cfo.DECISION_COLORS.values())) == 4
        assert colors["deepfake_decision"] == cfo.DECISION_COLORS
        assert ds.app_config.color_scheme.color_by == "value"  # the App draws value colours only so
        assert {"path": "gt", "fieldColor": "#111"} in ds.app_config.color_scheme.fields

        # a colour mode someone chose is kept
        ds.app_config.color_scheme.color_by = "field"
        ds.save()
        cfo.score_samples(ds, DeepfakeScorer(tiny_checkpoint))
        ds.reload()
        assert ds.app_config.color_scheme.color_by == "field"
    finally:
        ds.delete()


# -- the decision on the samples and on the dataset ---------------------------------------------
def test_apply_writes_each_outcome_and_records_the_rule(scores_dataset, tiny_checkpoint):
    ds = scores_dataset
    probs = ds.values(cfo.PROB_FIELD)
    rule = DecisionRule(0.5, review_band=(0.3, 0.7))
    cfo.apply_decision(ds, rule)
    assert ds.values("deepfake_decision.label") == list(rule.decide_many(probs))
    assert len(set(ds.values("deepfake_decision.id"))) == len(ds)  # each label its own id
    applied = cfo.last_decision(ds)
    assert applied.rule == rule and applied.samples == len(ds)
    assert applied.decision_field == "deepfake_decision"

    # another rule on part of the dataset: those samples change, the record follows
    part = ds.limit(5)
    cfo.apply_decision(part, DecisionRule(0.9), decision_field="deepfake_decision")
    got = ds.values("deepfake_decision.label")
    assert got[:5] == list(DecisionRule(0.9).decide_many(probs[:5]))
    assert got[5:] == list(rule.decide_many(probs[5:]))
    assert cfo.last_decision(ds).rule == DecisionRule(0.9)

    # re-scoring keeps the record (it is a rule on the field's scores), other fields too
    ds.set_values("filepath", [ds.first().filepath] * len(ds))
    cfo.score_samples(ds, DeepfakeScorer(tiny_checkpoint))
    assert cfo.last_decision(ds).rule == DecisionRule(0.9)
    assert cfo.scoring_settings(ds)["curate.model"] == tiny_checkpoint


def test_decision_field_conflicts_and_opt_out(scores_dataset):
    ds = scores_dataset
    ds.add_sample_field("taken", fo.StringField)
    with pytest.raises(cfo.FieldConflictError, match="'taken' already exists as StringField"):
        cfo.apply_decision(ds, DecisionRule(), decision_field="taken")
    with pytest.raises(cfo.FieldConflictError, match="'fake_prob' already exists as FloatField"):
        cfo.apply_decision(ds, DecisionRule(), decision_field="fake_prob")
    assert not ds.count_sample_tags()  # nothing was done
    summary = cfo.apply_decision(ds, DecisionRule(), decision_field=None)
    assert summary.decision_field is None and not ds.has_sample_field("deepfake_decision")
    assert cfo.last_decision(ds).decision_field is None


def test_a_record_that_is_not_a_rule_is_no_decision(scores_dataset):
    ds = scores_dataset
    assert cfo.last_decision(ds) is None
    ds.info["curate"] = {"fake_prob": {"decision": {"threshold": 7}}}
    ds.save()
    assert cfo.last_decision(ds) is None


# -- the panel's figures -------------------------------------------------------------------------
def test_histogram_bins_agree_with_the_rule_at_every_edge(scores_dataset):
    ds = scores_dataset
    hist = cfo.score_histogram(ds)
    assert len(hist.counts) == round(1 / STEP) and hist.total == len(ds) - 2  # no unscored
    probs = [p for p in ds.values(cfo.PROB_FIELD) if p is not None and not math.isnan(p)]
    bins = len(hist.counts)
    for k, n in enumerate(hist.counts):
        left = k / bins  # the edges as the slider and the rule write them
        inside = [p for p in probs if DecisionRule(left).decide(p) == "remove"
                  and (k == len(hist.counts) - 1 or DecisionRule((k + 1) / bins).decide(p) == "keep")]  # fmt: skip
        assert n == len(inside), (k, left)
    assert hist.counts[37] == 1 and hist.counts[99] == 2  # 0.37 on its edge; 0.999 and 1.0


def test_groups_borderline_first(scores_dataset):
    ds = scores_dataset
    rule = DecisionRule(0.5, review_band=(0.3, 0.7))
    for outcome in OUTCOMES:
        view = cfo.outcome_view(ds, rule, outcome)
        assert sorted(view.values("id")) == sorted(
            cfo.decision_views(ds, rule)[outcome].values("id")
        )
        if outcome != "unscored":
            p = view.values(cfo.PROB_FIELD)
            assert p == sorted(p, key=lambda v: abs(v - 0.5))


@pytest.mark.parametrize(
    ("moved", "values", "want"),
    [
        ("threshold", (0.2, 0.3, 0.7), (0.2, 0.2, 0.7)),  # the band widens to hold it
        ("threshold", (0.9, 0.3, 0.7), (0.9, 0.3, 0.9)),
        ("threshold", (1.0, 1.0, 1.0), (1.0, 0.99, 1.0)),  # never an empty band
        ("low", (0.5, 0.6, 0.7), (0.6, 0.6, 0.7)),  # the threshold follows the band
        ("low", (0.5, 1.0, 0.7), (0.99, 0.99, 1.0)),
        ("high", (0.5, 0.3, 0.4), (0.4, 0.3, 0.4)),
        ("high", (0.5, 0.3, 0.0), (0.01, 0.0, 0.01)),
        ("threshold", (0.123456, 0.3, 0.7), (0.12, 0.12, 0.7)),  # on the slider grid
    ],
)
def test_fit_band_keeps_what_was_moved_and_makes_a_rule(moved, values, want):
    t, lo, hi = cfo.fit_band(*values, moved)
    assert (t, lo, hi) == pytest.approx(want)
    DecisionRule(t, review_band=(lo, hi))  # valid


def test_label_metrics_are_curate_evals(scores_dataset):
    ds = scores_dataset
    labels = ["Real", "real", "Fake", None, "Fake", "FAKE", "Real", "Fake", "Real", "fake",
              "Fake", "Real", "Fake"]  # fmt: skip
    ds.set_values("truth", labels)
    rule = DecisionRule(0.5, review_band=(0.3, 0.7))
    got = cfo.label_metrics(ds, rule, "truth")
    probs = ds.values(cfo.PROB_FIELD)
    y, labelled = encode_labels(labels)
    p = np.array([np.nan if v is None else v for v in probs])
    use = labelled & ~np.isnan(p)
    want = compute_metrics(y[use], p[use], 0.5)
    assert got.metrics.to_dict() == want.to_dict()
    assert (got.labelled, got.unlabelled, got.unscored) == (int(use.sum()), 1, 2)
    outcomes = rule.decide_many(probs)
    assert got.by_class["Fake"]["review"] == sum(
        1 for o, v, ok in zip(outcomes, y, labelled, strict=True) if ok and v == 1 and o == "review"
    )
    assert "truth" in cfo.label_fields(ds) and "fake_prob" not in cfo.label_fields(ds)

    # numbers need a map, as with curate eval --label-map
    ds.set_values("digit", [1 if v and v.lower() == "fake" else 0 for v in labels])
    assert "need an explicit map" in cfo.label_metrics(ds, rule, "digit").error
    mapped = cfo.label_metrics(ds, rule, "digit", label_map="1=Fake,0=Real")
    assert mapped.error is None and mapped.labelled == len(ds) - 2


def test_ensemble_members_are_written_and_summarised(photo_paths, broken_images, tiny_checkpoint,
                                                     tmp_path):  # fmt: skip
    second = build_random_checkpoint(tmp_path / "second", classifier_scale=SPREAD, seed=1)
    files = [*photo_paths, broken_images["truncated"]]
    ds = fo.Dataset()
    try:
        ds.add_samples([fo.Sample(filepath=f) for f in files])
        scorer = DeepfakeScorer([tiny_checkpoint, second], device="cpu", dtype="float32")
        cfo.score_samples(ds, scorer)
        want = scorer.score_images(files)["member_fake_probs"]
        got = ds.values("member_fake_probs")
        assert got[-1] is None and np.allclose(got[:-1], want[:-1])
        assert isinstance(ds.get_field("member_fake_probs").field, fo.FloatField)
        members = cfo.ensemble_members(ds)
        assert members == [tiny_checkpoint, second]
        summaries = cfo.member_summaries(ds, members)
        for j, m in enumerate(summaries):
            assert m.mean == pytest.approx(np.mean([w[j] for w in want[:-1]]))
            assert m.histogram.total == len(files) - 1
        # a single detector has none
        single = fo.Dataset()
        single.add_samples([fo.Sample(filepath=photo_paths[0])])
        cfo.score_samples(single, DeepfakeScorer(tiny_checkpoint))
        assert cfo.ensemble_members(single) == [] and not single.has_sample_field(
            "member_fake_probs"
        )
        single.delete()
    finally:
        ds.delete()


# -- the model check in the App's words ---------------------------------------------------------
def test_model_problems_in_the_apps_words(tiny_checkpoint, tmp_path):
    hub = cfo.model_problem("prithivMLmods/open-deepfake-detection")
    assert "not in the server's Hugging Face cache" in hub and "hf download" in hub
    assert "--model" not in hub and "CURATE_MODEL" not in hub
    assert cfo.model_problem("  ").startswith("Enter a model")
    assert cfo.model_problem(None).startswith("Enter a model")

    not_a_model = tmp_path / "holiday-photos"
    not_a_model.mkdir()
    msg = cfo.model_problem(str(not_a_model))
    assert msg.startswith(f"The folder {not_a_model} is not a model checkpoint")
    assert "huggingface.co" not in msg

    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(Path(tiny_checkpoint) / name, no_weights / name)
    assert "has a model's configs but no weights" in cfo.model_problem(str(no_weights))

    a_file = tmp_path / "model.safetensors"
    a_file.write_bytes(b"x")
    assert cfo.model_problem(str(a_file)).endswith("is a file; Model takes a checkpoint folder "
                                                   "or a Hugging Face Hub id")  # fmt: skip
    assert f"There is no folder {tmp_path / 'gone'} on the server" in cfo.model_problem(
        str(tmp_path / "gone")
    )

    # labels curate cannot read: the hint names the form's field, and filling it fixes it
    odd = tmp_path / "odd-labels"
    shutil.copytree(tiny_checkpoint, odd)
    config = odd / "config.json"
    config.write_text(config.read_text().replace('"Fake"', '"Sky"').replace('"Real"', '"Sea"'))
    msg = cfo.model_problem(str(odd))
    assert "'Synthetic labels'" in msg and "synthetic_labels=" not in msg and "--" not in msg
    assert cfo.model_problem(str(odd), synthetic_labels="Sky") is None
    assert "'Synthetic labels' names 'Cloud'" in cfo.model_problem(
        str(odd), synthetic_labels="Cloud"
    )


# -- export progress -----------------------------------------------------------------------------
def test_export_streams_its_progress_and_types_an_empty_file(scores_dataset, tmp_path):
    import pyarrow.parquet as pq

    ds = scores_dataset
    rule = DecisionRule(0.5)
    kept = cfo.count_decisions(ds, rule)["keep"]
    events = list(cfo.iter_export_parquet(ds, tmp_path / "k.parquet", rule=rule, chunk_size=2))
    assert [e.rows for e in events[:-1]] == [min(2 * (i + 1), kept) for i in range(len(events) - 1)]
    assert (
        events[-1].done
        and events[-1].rows == kept == pq.read_metadata(tmp_path / "k.parquet").num_rows
    )
    assert (
        events[-1].label == f"Exported {kept} rows" and events[0].label == f"Wrote 2 of {kept} rows"
    )
    # checks raise in the call, before anything streams
    with pytest.raises(FileExistsError):
        cfo.iter_export_parquet(ds, tmp_path / "k.parquet", rule=rule)

    # a rule that keeps nothing: a file with no rows, every score column typed
    empty = tmp_path / "none.parquet"
    assert cfo.export_parquet(ds, empty, rule=DecisionRule(0.0)) == 0
    schema = pq.read_schema(empty)
    assert {"fake_prob", "real_prob", "deepfake_label", "deepfake_error", "decision"} <= set(
        schema.names
    )
    assert str(schema.field("fake_prob").type) == "float"


# -- wording ---------------------------------------------------------------------------------------
def test_counts_and_rules_in_words():
    assert (count(0), count(1), count(2), count(1234, "row")) == (
        "0 samples", "1 sample", "2 samples", "1,234 rows")  # fmt: skip
    steps = rule_steps(DecisionRule(0.5, review_band=(0.3, 0.7), unscored="keep"),
                       tags={"review": "deepfake_review"})  # fmt: skip
    assert steps == [
        "fake_prob < 0.3: kept",
        "0.3 ≤ fake_prob < 0.7: to review (tagged 'deepfake_review')",
        "fake_prob ≥ 0.7: synthetic",
        "no score (unreadable image): kept",
    ]
    assert "changes no outcome" in threshold_help(DecisionRule(0.5, review_band=(0.3, 0.7)), True)
    assert "at or above this are synthetic" in threshold_help(DecisionRule(0.5), False)
