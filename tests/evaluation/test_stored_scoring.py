"""`curate.evaluation.stored`: the settings a scored file records are read back whole, so the
same scorer (an ensemble, a head, per-member labels) can be built again."""

from __future__ import annotations

from curate.evaluation.stored import scoring_of, stored_scoring
from curate.schema import metadata_entries
from curate.scorer import DeepfakeScorer


def test_an_ensembles_metadata_reads_back_as_its_settings(tiny_checkpoint, swapped_checkpoint):
    members = [tiny_checkpoint, swapped_checkpoint]
    scorer = DeepfakeScorer(
        model=members,
        revision=[None, "main"],
        combine="logit_mean",
        synthetic_labels={swapped_checkpoint: "Fake"},
        device="cpu",
        dtype="float32",
    )
    stored = stored_scoring(scorer.metadata())
    assert stored.model == members and stored.members == members
    assert stored.revision == [None, "main"] and stored.combine == "logit_mean"
    assert stored.synthetic_labels == {swapped_checkpoint: "Fake"}
    assert stored.head is None and stored.dtype == "float32"
    assert stored.describe() == f"ensemble (logit_mean) of {tiny_checkpoint}, {swapped_checkpoint}"
    # What the scorer holds and what its file records are the same settings.
    held = scoring_of(scorer)
    for name in ("model", "revision", "combine", "synthetic_labels", "head"):
        assert getattr(held, name) == getattr(stored, name), name


def test_one_models_metadata(tiny_checkpoint):
    stored = stored_scoring(
        DeepfakeScorer(model=tiny_checkpoint, revision="v1", synthetic_labels="Fake").metadata()
    )
    assert (stored.model, stored.revision, stored.members) == (tiny_checkpoint, "v1", None)
    assert stored.combine is None and stored.synthetic_labels == "Fake"
    assert stored.describe() == tiny_checkpoint


def test_a_heads_folder_is_read():
    meta = metadata_entries({"model": "org/det", "head": "/data/head", "head_sha256": "ab"})
    stored = stored_scoring(meta)
    assert (stored.head, stored.head_sha256) == ("/data/head", "ab")
    assert stored.describe() == "org/det with adapted head /data/head"


def test_unreadable_entries_count_as_absent():
    stored = stored_scoring({"curate.members": "[not json", "curate.revision": "[v1"})
    assert stored.model is None and stored.members is None and stored.revision == "[v1"
    assert stored_scoring({}).describe() is None
