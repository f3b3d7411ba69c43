"""quantize="int8" (curate.pipeline.quantize): the opt-in fastest mode runs int8 kernels,
compiled, and stays within its documented bound of the float32 reference on a spread-scaled
model; a machine that cannot run it gets one line saying what to install or change."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from curate import DeepfakeScorer
from curate.pipeline.quantize import (
    INSTALL_HINT,
    Int8Classifier,
    check_quantize,
    cpu_has_int8_units,
    int8_problem,
)

# |fake_prob - fake_prob(float32)| of quantize="int8": 0.010 measured on the 512x512 spread
# model (where bf16 alone reaches 0.017); benchmarks/RESULTS.md has the full-size model's.
INT8_MAX_DP = 0.02


def test_quantize_setting_is_checked(tiny_checkpoint):
    assert check_quantize(None) is None and check_quantize("INT8") == "int8"
    assert DeepfakeScorer(tiny_checkpoint).quantize is None  # the default
    with pytest.raises(ValueError, match="quantize must be None or 'int8', got 'int4'"):
        DeepfakeScorer(tiny_checkpoint, quantize="int4")
    with pytest.raises(ValueError, match="only pays compiled"):
        DeepfakeScorer(tiny_checkpoint, quantize="int8", compile=False)


def test_int8_problems_say_what_to_change(monkeypatch):
    gpu = int8_problem(torch.device("cuda"))
    assert gpu and gpu.startswith("quantize='int8' runs on CPU") and "not cuda" in gpu
    monkeypatch.setattr("curate.pipeline.quantize.cpu_has_int8_units", lambda: False)
    assert "needs a CPU with int8 units (AVX-512 VNNI or AMX)" in int8_problem(torch.device("cpu"))


def test_int8_without_torchao_says_what_to_install(tiny_checkpoint, photo_paths, monkeypatch):
    if not cpu_has_int8_units():
        pytest.skip("this CPU has no int8 units; the CPU check answers first")
    for name in [m for m in sys.modules if m == "torchao" or m.startswith("torchao.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchao", None)  # import torchao raises ImportError
    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", quantize="int8")
    with pytest.raises(ValueError) as err:
        scorer.score_images(photo_paths[:1])
    assert str(err.value) == f"quantize='int8' needs torchao: {INSTALL_HINT}"


@pytest.mark.slow
def test_int8_scores_within_its_bound(checkpoint_512, photo_paths, mode_images):
    pytest.importorskip("torchao")
    if not cpu_has_int8_units():
        pytest.skip("this CPU has no int8 units (AVX-512 VNNI or AMX)")
    images = photo_paths + [mode_images[k] for k in ("cmyk_jpeg", "p_png", "rgba_png")]
    exact = DeepfakeScorer(checkpoint_512, device="cpu", dtype="float32", compile=False)
    fast = DeepfakeScorer(checkpoint_512, device="cpu", quantize="int8", batch_size=4)
    p32 = np.array(exact.score_images(images)["fake_prob"], dtype=np.float64)
    p8 = np.array(fast.score_images(images)["fake_prob"], dtype=np.float64)
    model = fast.detector.model
    assert isinstance(model._orig_mod, Int8Classifier)
    assert model.is_compiled and model.failed is None  # the int8 kernels ran
    assert np.ptp(p32) > 0.5  # spread scores, where a bound means something
    dp = np.abs(p8 - p32)
    assert dp.max() <= INT8_MAX_DP, dp
    assert dp.max() > 0  # it really ran quantised
    # One scale per batch: an image scored alone stays within the bound too.
    alone = np.array(fast.score_images(images[:1])["fake_prob"], dtype=np.float64)
    assert abs(alone[0] - p32[0]) <= INT8_MAX_DP
