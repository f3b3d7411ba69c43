"""`curate.app.options.ScorerSettings`: the scorer options score, eval and adapt share, turned
into a scorer in one place, and the label map checked in one place."""

from __future__ import annotations

import pytest

from curate.app.adapt import AdaptRequest, adapt
from curate.app.evaluate import EvalRequest
from curate.app.options import RequestError, ScorerSettings, check_label_map
from curate.app.score import ScoreRequest


def test_requests_share_the_scorer_settings(tmp_path, tiny_checkpoint, swapped_checkpoint):
    members = (tiny_checkpoint, swapped_checkpoint)
    given = dict(model=members, combine="max", device="cpu", dtype="float32", batch_size=4)
    settings = ScorerSettings(**given)
    # Positional fields stay the request's own: source, output / out_dir.
    assert ScoreRequest("src", "out.parquet", **given).scorer_settings() == settings
    assert EvalRequest("src", tmp_path, **given).scorer_settings() == settings
    assert settings.check_scoring() == 4

    scorer = settings.scorer(4, "img", with_logits=True)
    assert scorer.members == members and scorer.combine == "max"
    assert (scorer.image_column, scorer.with_logits, scorer.batch_size) == ("img", True, 4)
    assert scorer.metadata()["curate.combine"] == "max"


def test_the_settings_are_checked_once_for_every_request():
    for bad, message in (({"batch_size": "0"}, "--batch-size"), ({"dtype": "int3"}, "dtype")):
        with pytest.raises(RequestError, match=message):
            ScorerSettings(**bad).check_scoring()


def test_label_maps():
    assert check_label_map("1=Fake,0=Real") == {"1": "Fake", "0": "Real"}
    assert check_label_map(None) is None
    with pytest.raises(RequestError, match="^--label-map: label map sends '1' to 'x'"):
        check_label_map(["1=x"])


def test_adapt_refuses_a_head_before_the_model_loads(tmp_path, image_folder):
    pytest.importorskip("sklearn")
    request = AdaptRequest(image_folder, tmp_path / "head", model="no-such-model", head="h")
    with pytest.raises(RequestError, match="curate adapt fits a head on the model's own"):
        adapt(request)
    assert not (tmp_path / "head").exists()


def test_report_folders(tmp_path):
    from curate.app.options import check_report_dir

    assert check_report_dir(tmp_path / "new", False) == str(tmp_path / "new")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RequestError, match="is a file; name a folder for the report"):
        check_report_dir(tmp_path / "file", True)
    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(RequestError, match="already holds a report .pass --overwrite"):
        check_report_dir(tmp_path, False)
    assert check_report_dir(tmp_path, True) == str(tmp_path)
