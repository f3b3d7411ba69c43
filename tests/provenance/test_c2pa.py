"""C2PA content credentials on files signed here with c2pa-python under a generated
certificate chain: validation states reported honestly, trust anchors, and broken stores."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from provenance_artefacts import encode

from curate.provenance import ProvenanceChecker, read_c2pa
from curate.provenance.c2pa import load_trust_anchors

pytest_plugins = ["provenance_artefacts"]


def _c2pa_detail(path) -> dict:
    row = ProvenanceChecker().check(str(path)).row()
    return json.loads(row["provenance_detail"])["evidence"][0]


def test_c2pa_validation_is_reported_honestly(artefacts, chain):
    """Untrusted chain: "Valid" with `signingCredential.untrusted`; with the test root as a
    trust anchor: "Trusted"; tampered: "Invalid" with the failing check, and not strong."""
    ev = _c2pa_detail(artefacts["c2pa_ai.jpg"])
    assert ev["validation_state"] == "Valid"
    assert "signingCredential.untrusted" in ev["validation_codes"]
    manifest = ev["manifests"][ev["active_manifest"]]
    assert manifest["claim_generator"].startswith("curate-tests 1.0")
    assert manifest["software_agents"] == ["TestDiffusion 2.0"]
    assert manifest["digital_source_types"] == ["trainedAlgorithmicMedia"]
    assert manifest["signer"] == "curate test signer"

    trusted = ProvenanceChecker(trust_anchors=chain[2]).check(str(artefacts["c2pa_ai.jpg"]))
    assert trusted.summary.startswith("C2PA Trusted:") and trusted.strong

    tampered = _c2pa_detail(artefacts["c2pa_tampered.jpg"])
    assert tampered["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in tampered["validation_codes"]


def test_edit_of_generated_image_reports_the_ingredient(artefacts):
    """An edit whose own manifest declares nothing still carries its generated parent's
    declaration: synthetic and strong, saying it was found in an ingredient."""
    ev = _c2pa_detail(artefacts["c2pa_edit_of_ai.jpg"])
    active = ev["manifests"][ev["active_manifest"]]
    assert active["digital_source_types"] == []
    parents = [m for m in ev["manifests"].values() if not m["active"]]
    assert [m["digital_source_types"] for m in parents] == [["trainedAlgorithmicMedia"]]
    assert ev["says"] == "synthetic" and ev["strong"] is True


def test_trust_anchors_from_text_or_file_and_clear_errors(tmp_path, chain):
    pem = tmp_path / "anchors.pem"
    pem.write_text(chain[2])
    assert load_trust_anchors(None) is None
    assert load_trust_anchors(chain[2]) == chain[2]
    assert load_trust_anchors(pem) == chain[2]
    assert ProvenanceChecker(trust_anchors=str(pem)).trust_anchors == chain[2]
    with pytest.raises(ValueError, match="cannot read C2PA trust anchors .*missing.pem"):
        ProvenanceChecker(trust_anchors=str(tmp_path / "missing.pem"))
    (tmp_path / "empty.pem").write_text("nothing here")
    with pytest.raises(ValueError, match="hold no PEM certificate"):
        ProvenanceChecker(trust_anchors=str(tmp_path / "empty.pem"))


def test_broken_or_absent_manifest_stores(artefacts):
    """A store cut short is reported as unreadable (neutral, never strong) instead of raising;
    "c2pa" in ordinary bytes is no manifest; a caller's scan that found none skips the reader."""
    signed = artefacts["c2pa_ai.jpg"].read_bytes()
    store = signed.index(b"c2pa")
    cut = read_c2pa(signed[: store + 400])
    assert cut is not None and cut.summary.startswith("C2PA data present but unreadable (")
    assert cut.says is None and not cut.strong and cut.detail["error"]
    row = ProvenanceChecker().check(signed[: store + 400]).row()
    assert row["provenance_synthetic"] is None and row["provenance_strong"] is False

    assert read_c2pa(signed, present=False) is None
    commented = encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG", comment=b"c2pa notes")
    assert b"c2pa" in commented
    assert read_c2pa(commented) is None
    assert ProvenanceChecker().check(commented).summary == "none found"
