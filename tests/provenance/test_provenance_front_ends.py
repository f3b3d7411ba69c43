"""Provenance through every front end, on the real artefacts: the scorer, `datasets`, the
decision rule and `filter_parquet`, the CLI in a subprocess, and the FiftyOne operators."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from conftest import run_curate as _curate
from provenance_artefacts import EXPECTED, WATERMARKED, check_expected

from curate.provenance import PROVENANCE_COLUMNS, WATERMARK_COLUMN, ProvenanceChecker

pytest_plugins = ["provenance_artefacts"]


def _copy_folder(artefacts: dict[str, Path], dest: Path) -> Path:
    dest.mkdir()
    for name, path in artefacts.items():
        shutil.copy(path, dest / name)
    return dest


# -- front ends -----------------------------------------------------------------------------------
def test_scorer_adds_provenance_columns(tiny_checkpoint, artefacts):
    from curate import DeepfakeScorer

    names = ["c2pa_ai.jpg", "a1111.png", "clean.png", "notes.jpg"]
    scorer = DeepfakeScorer(tiny_checkpoint, batch_size=2, provenance=True)
    assert scorer.columns[-4:] == PROVENANCE_COLUMNS
    out = scorer.score_images([str(artefacts[n]) for n in names])
    assert set(out) == set(scorer.columns)
    for i, name in enumerate(names):
        check_expected(name, {c: out[c][i] for c in PROVENANCE_COLUMNS})
    # the score columns are untouched by the option
    plain = DeepfakeScorer(tiny_checkpoint, batch_size=2).score_images(
        [str(artefacts[n]) for n in names]
    )
    assert plain["fake_prob"] == out["fake_prob"]
    clone = pickle.loads(pickle.dumps(DeepfakeScorer(tiny_checkpoint, provenance="watermark")))
    assert clone.provenance == ProvenanceChecker(watermark=True)
    assert clone.columns[-1] == WATERMARK_COLUMN


def test_score_dataset_with_provenance(tiny_checkpoint, artefacts):
    """Through `score_dataset` the image column is read undecoded, so C2PA and every chunk
    survive; the provenance columns get their own types."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    from curate import score_dataset

    names = ["c2pa_ai.jpg", "c2pa_capture.jpg", "comfyui.png", "wm_sdxl.png", "stripped_a1111.png"]
    ds = Dataset.from_dict({"image": [str(artefacts[n]) for n in names]}).cast_column(
        "image", ImageFeature()
    )
    scored = score_dataset(ds, model=tiny_checkpoint, provenance="watermark", batch_size=4)
    assert scored.features["provenance_synthetic"].dtype == "bool"
    assert scored.features[WATERMARK_COLUMN].dtype == "float32"
    rows = scored.remove_columns("image").to_list()
    for name, row in zip(names, rows, strict=True):
        check_expected(name, row, watermark=True)


# -- the decision rule ----------------------------------------------------------------------------
def test_decision_rule_provenance_options_agree_row_and_column():
    from curate.filtering import DecisionRule

    probs = [0.1, 0.1, 0.1, 0.9, 0.9, 0.9, None, None, 0.6, 0.1]
    synthetic = [None, True, True, False, None, True, None, True, True, False]
    strong = [False, False, True, False, False, True, False, True, False, False]
    expected = {
        (False, False): ["keep", "keep", "keep", "remove", "remove", "remove"]
        + ["unscored", "unscored", "review", "keep"],
        (True, False): ["keep", "keep", "remove", "remove", "remove", "remove"]
        + ["unscored", "remove", "review", "keep"],
        (False, True): ["keep", "review", "review", "review", "remove", "remove"]
        + ["unscored", "unscored", "review", "keep"],
        (True, True): ["keep", "review", "remove", "review", "remove", "remove"]
        + ["unscored", "remove", "review", "keep"],
    }
    for (strong_removes, conflicts), want in expected.items():
        rule = DecisionRule(
            0.5,
            review_band=(0.3, 0.7),
            remove_strong_evidence=strong_removes,
            review_conflicts=conflicts,
        )
        rows = [rule.decide(p, s, t) for p, s, t in zip(probs, synthetic, strong, strict=True)]
        assert rows == want, (strong_removes, conflicts)
        assert list(rule.decide_many(probs, synthetic, strong)) == want
        import pyarrow as pa

        table = pa.table(
            {
                "fake_prob": pa.array(probs, pa.float32()),
                "provenance_synthetic": pa.array(synthetic, pa.bool_()),
                "provenance_strong": pa.array(strong, pa.bool_()),
            }
        )
        assert list(rule.decide_columns(table)) == want
    assert DecisionRule(review_conflicts=True).can_review
    assert not DecisionRule().uses_provenance
    with pytest.raises(ValueError, match="no provenance_synthetic"):
        DecisionRule(remove_strong_evidence=True).decide_columns({"fake_prob": [0.1]})
    with pytest.raises(ValueError, match="review_conflicts must be True or False"):
        DecisionRule(review_conflicts="yes")


def test_filter_drops_c2pa_ai_images_the_score_alone_keeps(tiny_checkpoint, artefacts, tmp_path):
    """With a threshold no image reaches, the score keeps everything; the provenance option
    removes exactly the rows with strong evidence, and conflicts go to review."""
    import pyarrow.parquet as pq
    from datasets import Dataset
    from datasets import Image as ImageFeature

    from curate import score_dataset
    from curate.filtering import DecisionRule, filter_parquet, filter_synthetic
    from curate.io.parquet import write_parquet

    names = ["c2pa_ai.jpg", "c2pa_composite.png", "c2pa_tampered.jpg", "a1111.png", "clean.png"]
    ds = Dataset.from_dict(
        {"name": names, "image": [str(artefacts[n]) for n in names]}
    ).cast_column("image", ImageFeature())
    scored = score_dataset(ds, model=tiny_checkpoint, provenance=True)
    assert max(scored["fake_prob"]) < 1.0

    by_score = filter_synthetic(scored, DecisionRule(threshold=1.0))
    assert by_score.kept["name"] == names
    rule = DecisionRule(threshold=1.0, remove_strong_evidence=True)
    split = filter_synthetic(scored, rule)
    assert split.removed["name"] == ["c2pa_ai.jpg", "c2pa_composite.png"]
    assert split.kept["name"] == ["c2pa_tampered.jpg", "a1111.png", "clean.png"]
    split = filter_synthetic(
        scored, DecisionRule(threshold=1.0, remove_strong_evidence=True, review_conflicts=True)
    )
    assert split.review["name"] == ["c2pa_tampered.jpg", "a1111.png"]
    assert split.kept["name"] == ["clean.png"]

    src = tmp_path / "scored.parquet"
    write_parquet([scored.to_dict()], src)
    kept, removed = tmp_path / "kept.parquet", tmp_path / "removed.parquet"
    counts = filter_parquet(src, kept, rule, removed=removed, unscored=tmp_path / "u.parquet")
    assert (counts.keep, counts.remove) == (3, 2)
    assert pq.read_table(removed).column("name").to_pylist() == [
        "c2pa_ai.jpg",
        "c2pa_composite.png",
    ]
    meta = pq.read_schema(kept).metadata
    assert meta[b"curate.remove_strong_evidence"] == b"true"


# -- the command line -----------------------------------------------------------------------------
def test_cli_score_provenance_and_filter(tiny_checkpoint, artefacts, tmp_path):
    """`curate score --provenance --watermark` on a folder of the artefacts reports each
    file's evidence; `curate filter --remove-strong-evidence` drops the C2PA-declared and
    watermarked images that the score alone keeps."""
    import pyarrow.parquet as pq

    folder = _copy_folder(artefacts, tmp_path / "artefacts")
    out = tmp_path / "scored.parquet"
    proc = _curate("score", folder, "-o", out, "--model", tiny_checkpoint, "--watermark")
    assert proc.returncode == 0, proc.stderr
    assert "Provenance evidence: " in proc.stdout
    assert "absence proves nothing" in proc.stdout
    table = pq.read_table(out)
    assert json.loads(table.schema.metadata[b"curate.provenance"])["watermark"] is True
    rows = table.drop_columns(["image"]).to_pylist()
    paths = [p["path"] for p in table.column("image").to_pylist()]
    names = [Path(p).name for p in paths]
    assert sorted(names) == sorted(artefacts)
    for name, row in zip(names, rows, strict=True):
        check_expected(name, row, watermark=True)
    strong = sorted(n for n, r in zip(names, rows, strict=True) if r["provenance_strong"])
    assert strong == sorted({n for n, e in EXPECTED.items() if e[1]} | set(WATERMARKED))
    assert "c2pa_ai.jpg" in strong and "c2pa_edit_of_ai.jpg" in strong

    kept, removed = tmp_path / "kept.parquet", tmp_path / "removed.parquet"
    base = [
        "filter",
        out,
        "-o",
        kept,
        "--removed",
        removed,
        "--threshold",
        "1",
        "--unscored",
        "keep",
    ]
    proc = _curate(*base)
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(removed).num_rows == 0  # the score alone keeps every row
    proc = _curate(*base, "--remove-strong-evidence", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    gone = sorted(Path(p["path"]).name for p in pq.read_table(removed).column("image").to_pylist())
    assert gone == strong
    assert pq.read_table(kept).num_rows == len(artefacts) - len(strong)

    # without provenance columns the option is refused with one line, not a traceback
    plain = tmp_path / "plain.parquet"
    pq.write_table(table.drop_columns([c for c in table.column_names if "provenance" in c]), plain)
    proc = _curate("filter", plain, "-o", tmp_path / "k2.parquet", "--remove-strong-evidence")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "score with `curate score --provenance`" in proc.stderr


def test_cli_single_image_prints_provenance(tiny_checkpoint, artefacts):
    proc = _curate("score", artefacts["c2pa_ai.jpg"], "--model", tiny_checkpoint, "--provenance")
    assert proc.returncode == 0, proc.stderr
    assert "provenance: C2PA Valid" in proc.stdout


# -- FiftyOne -------------------------------------------------------------------------------------
def test_fiftyone_operator_writes_provenance_fields_and_rule_agrees(
    tiny_checkpoint, artefacts, tmp_path
):
    """The detect operator, asked for provenance, writes the evidence fields the checker gives;
    the provenance-aware rule's views select exactly what `DecisionRule.decide` says, and the
    apply operator tags the strong-evidence samples that the score alone keeps."""
    fo = pytest.importorskip("fiftyone")
    import fiftyone.operators as foo

    from curate.filtering import OUTCOMES, DecisionRule
    from curate.integrations import fiftyone as cfo

    names = ["c2pa_ai.jpg", "c2pa_capture.jpg", "a1111.png", "clean.png", "wm_sdxl.png"]
    names += ["notes.jpg"]
    ds = fo.Dataset()
    try:
        ds.add_samples([fo.Sample(filepath=str(artefacts[n])) for n in names])
        detect = foo.get_operator("@curate/deepfakes/detect_deepfakes")
        detect(ds, model=tiny_checkpoint, provenance=True, watermark=True)
        checker = ProvenanceChecker(watermark=True)
        for sample in ds.iter_samples():
            want = checker.check(sample.filepath).row(watermark=True)
            got = {c: sample[c] for c in want}
            assert got == pytest.approx(want), Path(sample.filepath).name
            check_expected(Path(sample.filepath).name, got, watermark=True)

        probs, synth, strong = ds.values(["fake_prob", "provenance_synthetic", "provenance_strong"])
        for flags in ((True, False), (False, True), (True, True)):
            for threshold in (0.0, 0.5, 1.0):
                rule = DecisionRule(
                    threshold, remove_strong_evidence=flags[0], review_conflicts=flags[1]
                )
                want = rule.decide_many(probs, synth, strong)
                views = cfo.decision_views(ds, rule)
                for outcome in OUTCOMES:
                    assert len(views[outcome]) == int((want == outcome).sum()), (rule, outcome)

        act = foo.get_operator("@curate/deepfakes/apply_deepfake_threshold")
        act(ds, threshold=1.0, unscored="keep", remove_strong_evidence=True)
        tagged = sorted(Path(s.filepath).name for s in ds.match_tags(cfo.REMOVE_TAG))
        assert tagged == ["c2pa_ai.jpg", "wm_sdxl.png"]

        import pyarrow.parquet as pq

        out = tmp_path / "kept.parquet"
        rule = DecisionRule(1.0, unscored="keep", remove_strong_evidence=True)
        assert cfo.export_parquet(ds, out, rule=rule, outcomes=("keep",)) == len(names) - 2
        table = pq.read_table(out)
        assert set(PROVENANCE_COLUMNS) <= set(table.column_names)
        assert not any(table.column("provenance_strong").to_pylist())
        assert set(table.column("decision").to_pylist()) == {"keep"}
    finally:
        ds.delete()
