"""The provenance checker on real artefacts: every kind of evidence composed into one row, the
input forms it accepts, broken inputs, and the column contract it writes."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
from PIL import Image
from provenance_artefacts import check_expected

from curate import schema
from curate.provenance import (
    PROVENANCE_COLUMNS,
    WATERMARK_COLUMN,
    ProvenanceChecker,
    checker_from_options,
    describe,
    evidence_counts,
    resolve_provenance,
)

pytest_plugins = ["provenance_artefacts"]


def test_each_artefact_reports_its_evidence(artefacts):
    checker = ProvenanceChecker()
    for name, path in artefacts.items():
        check_expected(name, checker.check(str(path)).row())


def test_input_forms_agree(artefacts):
    """Path, bytes, {"bytes", "path"} dict and a PIL image opened from the file agree."""
    checker = ProvenanceChecker()
    for name in ("c2pa_ai.jpg", "comfyui.png", "a1111_exif.jpg", "xmp_ai.jpg"):
        path = artefacts[name]
        data = path.read_bytes()
        rows = [
            checker.check(x).row()
            for x in (str(path), path, data, {"bytes": data, "path": None}, {"path": str(path)})
        ]
        rows.append(checker.check(Image.open(path)).row())
        assert all(r == rows[0] for r in rows), name


def test_decoded_image_without_file_keeps_what_pil_read(artefacts):
    """A PIL image decoded from bytes (what `datasets` gives) has no file: C2PA cannot be
    checked, and the row says so; text chunks PIL read are still reported."""
    img = Image.open(io.BytesIO(artefacts["a1111.png"].read_bytes()))
    img.load()
    p = ProvenanceChecker().check(img)
    assert p.synthetic is True and "parameters" in p.summary
    assert "C2PA not checked" in p.summary
    arr = np.asarray(img.convert("RGB"))
    p = ProvenanceChecker().check(arr)
    assert p.synthetic is None and "no file bytes (ndarray)" in p.summary


def test_broken_inputs_give_reasons_never_raise(broken_images):
    checker = ProvenanceChecker(watermark=True)
    rows = checker.check_many(list(broken_images.values()))
    by_name = dict(zip(broken_images, rows["provenance"], strict=True))
    assert by_name["zero_bytes"] == "error: empty file (0 bytes)"
    assert by_name["not_an_image"] == "error: not a recognised image file"
    assert by_name["missing_file"].startswith("error: file not found")
    assert by_name["null"] == "error: no image (null value)"
    assert by_name["garbage_bytes"] == "error: not a recognised image file"
    # a truncated file still has readable headers: no evidence, and the pixels' failure noted
    assert by_name["truncated"].startswith("none found; watermark not checked: cannot decode")
    assert all(s is None for s in rows["provenance_synthetic"])
    assert not any(rows["provenance_strong"])


def test_checker_pickles_and_columns(artefacts):
    checker = ProvenanceChecker(watermark=True, watermark_false_alarm=1e-4)
    clone = pickle.loads(pickle.dumps(checker))
    assert clone == checker
    assert checker.columns == (*PROVENANCE_COLUMNS, WATERMARK_COLUMN)
    assert ProvenanceChecker().columns == PROVENANCE_COLUMNS
    out = clone.check_many([str(artefacts["c2pa_ai.jpg"]), None])
    assert set(out) == set(checker.columns) and all(len(v) == 2 for v in out.values())
    assert resolve_provenance(True) == ProvenanceChecker()
    assert resolve_provenance("watermark").watermark is True
    assert resolve_provenance(False) is None
    with pytest.raises(ValueError, match="provenance must be"):
        resolve_provenance("yes")
    with pytest.raises(ValueError, match="watermark_false_alarm"):
        ProvenanceChecker(watermark_false_alarm=0)


def test_columns_and_types_are_the_schema_contract():
    """The checker writes exactly the contract's provenance columns, typed as the contract
    says; the names it has always exported are the schema's."""
    assert PROVENANCE_COLUMNS is schema.PROVENANCE_COLUMNS
    assert WATERMARK_COLUMN == schema.PROVENANCE_WATERMARK
    checker = ProvenanceChecker(watermark=True)
    assert checker.dtypes == {c: schema.COLUMN_TYPES[c] for c in checker.columns}
    assert checker.dtypes[schema.PROVENANCE_SYNTHETIC] == "bool"
    assert set(checker.check(None).row(watermark=True)) == set(checker.columns)


def test_checker_maps_over_a_dataset_with_contract_types(artefacts):
    """`ds.map(checker, batched=True)` alone (no detector): the first batch's rows have no
    evidence, so every flag and the watermark rate are null there; the columns still get the
    contract's types, and later batches' values fit them."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    names = ["notes.jpg", "clean.png", "c2pa_ai.jpg", "wm_sdxl.png"]
    ds = Dataset.from_dict({"image": [str(artefacts[n]) for n in names]}).cast_column(
        "image", ImageFeature(decode=False)
    )
    checker = ProvenanceChecker(watermark=True)
    out = ds.map(checker, batched=True, batch_size=2)
    assert out.features == {**ds.features, **schema.datasets_features(checker.columns)}
    assert out["provenance_synthetic"] == [None, None, True, True]
    assert out["provenance_strong"] == [False, False, True, True]
    assert out[WATERMARK_COLUMN][0] is None and out[WATERMARK_COLUMN][3] >= 0.9


def test_front_end_helpers(chain, tmp_path):
    """What the CLI and the FiftyOne plugin build from their flags, what a file's metadata
    records of the checker, and the evidence counts a run prints."""
    assert checker_from_options() is None
    assert checker_from_options(provenance=True) == ProvenanceChecker()
    assert checker_from_options(watermark=True) == ProvenanceChecker(watermark=True)
    pem = tmp_path / "anchors.pem"
    pem.write_text(chain[2])
    checker = checker_from_options(trust_anchors=str(pem))
    assert checker is not None and checker.trust_anchors == chain[2]

    assert describe(None) is None
    settings = describe(checker)
    assert settings["watermark"] is False and len(settings["trust_anchors_sha256"]) == 64
    assert json.loads(json.dumps(settings)) == settings
    assert describe(ProvenanceChecker())["trust_anchors_sha256"] is None

    counts = evidence_counts([True, True, False, None, None], [True, False, False, False, False])
    assert counts == {"synthetic": 2, "strong": 1, "captured": 1, "none": 2}
