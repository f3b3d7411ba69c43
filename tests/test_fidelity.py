"""The CPU default dtype and its fidelity bound, on the real checkpoint's full-size architecture.

`dtype="auto"` on CPU is bfloat16 where the CPU computes bf16 natively (AMX, AVX-512 BF16),
float32 elsewhere; the documented bound is |fake_prob - fake_prob(float32)| <= 0.01.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curate import DeepfakeScorer
from curate.detectors import resolve_dtype
from curate.detectors.base import cpu_has_native_bf16
from curate.testing import build_random_checkpoint

BF16_MAX_DP = 0.01


def test_auto_dtype_on_cpu_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert resolve_dtype("auto", cpu) == expected
    monkeypatch.setenv("CURATE_CPU_BF16", "0")
    assert resolve_dtype("auto", cpu) == torch.float32
    monkeypatch.setenv("CURATE_CPU_BF16", "1")
    assert resolve_dtype(None, cpu) == torch.bfloat16
    assert resolve_dtype("float32", cpu) == torch.float32  # the exact path stays explicit


@pytest.fixture(scope="module")
def full_size_checkpoint(tmp_path_factory) -> str:
    return build_random_checkpoint(tmp_path_factory.mktemp("full") / "ckpt", full_size=True)


@pytest.mark.slow
def test_bf16_within_the_documented_bound_on_the_full_size_model(
    full_size_checkpoint, photo_paths, mode_images
):
    images = photo_paths + [mode_images[k] for k in ("cmyk_jpeg", "p_png", "rgba_png")]
    exact = DeepfakeScorer(full_size_checkpoint, device="cpu", dtype="float32", batch_size=4)
    fast = DeepfakeScorer(full_size_checkpoint, device="cpu", dtype="bfloat16", batch_size=4)
    p32 = np.array(exact.score_images(images)["fake_prob"], dtype=np.float64)
    p16 = np.array(fast.score_images(images)["fake_prob"], dtype=np.float64)
    assert fast.detector.dtype == torch.bfloat16
    dp = np.abs(p16 - p32)
    assert dp.max() <= BF16_MAX_DP, dp
    assert dp.max() > 0  # it really ran in bf16
