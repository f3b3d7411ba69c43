"""The invisible-watermark check: bit-exact with `invisible-watermark`'s decoder, detects the
SD / SDXL / FLUX messages embedded the way the reference pipelines embed them, and never flags
the project's real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from provenance_artefacts import WATERMARKED, check_expected

from curate.provenance import (
    NONE_FOUND,
    WATERMARK_COLUMN,
    WATERMARK_MESSAGES,
    ProvenanceChecker,
    check_watermark,
    decode_watermark,
    required_matches,
    watermark_block_bits,
)

pytest_plugins = ["provenance_artefacts"]


def test_watermark_decoder_is_bit_exact_with_invisible_watermark(artefacts, photo_paths):
    imwatermark = pytest.importorskip("imwatermark")
    noise = np.random.default_rng(0).integers(0, 256, (263, 301, 3), dtype=np.uint8)
    files = [*photo_paths, *(artefacts[n] for n in ("wm_sdxl.png", "wm_sd1.jpg", "wm_flux.png"))]
    for bgr in [np.asarray(Image.open(p).convert("RGB"))[:, :, ::-1].copy() for p in files] + [
        noise
    ]:
        bits = watermark_block_bits(bgr)
        for message in WATERMARK_MESSAGES.values():
            ref = imwatermark.WatermarkDecoder("bits", len(message)).decode(bgr, "dwtDct")
            assert np.array_equal(decode_watermark(bits, len(message)), np.asarray(ref, bool))


def test_watermark_detected_on_marked_files_only(artefacts):
    checker = ProvenanceChecker(watermark=True)
    for name, message in WATERMARKED.items():
        row = checker.check(str(artefacts[name])).row(watermark=True)
        check_expected(name, row, watermark=True)
        best = json.loads(row["provenance_detail"])["evidence"][-1]["best"]
        assert best["message"] == message
        assert best["matching_bits"] >= best["required"]
        assert row[WATERMARK_COLUMN] >= 0.9
    for name in ("clean.png", "clean.jpg", "stripped_a1111.png"):
        row = checker.check(str(artefacts[name])).row(watermark=True)
        assert row["provenance"] == NONE_FOUND and row["provenance_strong"] is False
        assert row[WATERMARK_COLUMN] < 0.75
        tried = json.loads(row["provenance_detail"])["watermark"]  # every message, for audit
        assert len(tried) == 8 and all(r["matching_bits"] < r["required"] for r in tried)


def test_watermark_false_positive_rate_on_real_photos(photo_paths):
    """No real photo of the project is reported as watermarked (the rate is 0 / n; the
    highest chance match rate is far below every message's requirement)."""
    rows = ProvenanceChecker(watermark=True).check_many(photo_paths)
    assert rows["provenance"] == [NONE_FOUND] * len(photo_paths)
    assert max(rows[WATERMARK_COLUMN]) < 0.7
    # the tolerance follows from the false-alarm bound: longer messages tolerate more errors
    assert required_matches(48, 1e-6, 8) == 42 and required_matches(136, 1e-6, 8) == 99


def test_false_alarm_bound_sets_the_tolerance(artefacts):
    """A looser bound needs fewer matching bits; a message too short for the bound can never
    be detected; the marked file is found under either bound."""
    assert required_matches(48, 1e-2, 8) < required_matches(48, 1e-6, 8)
    assert required_matches(8, 1e-6, 8) == 9  # 8 bits cannot beat 1.25e-7: never reported
    for false_alarm in (1e-2, 1e-9):
        check = check_watermark(str(artefacts["wm_sdxl.png"]), false_alarm=false_alarm)
        assert check.evidence is not None and check.evidence.strong
        assert check.evidence.detail["false_alarm"] == false_alarm


def test_watermark_check_small_and_broken(broken_images, tmp_path):
    small = tmp_path / "small.png"
    Image.new("RGB", (200, 200), (10, 20, 30)).save(small)
    p = ProvenanceChecker(watermark=True).check(str(small))
    assert "under 256x256" in p.summary and p.watermark_match is None
    p = ProvenanceChecker(watermark=True).check(broken_images["bomb"])
    assert "watermark not checked" in p.summary and "decompression bomb" in p.summary
