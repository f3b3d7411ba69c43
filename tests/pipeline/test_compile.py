"""curate.pipeline.compile through the scorer: compile="auto" leaves small runs (and
`curate score one.jpg`) uncompiled; once a run has spent its eager budget the model compiles
once, for its batch size, says so, and scores as the eager model does; forward hooks still
run; a compile that fails leaves the run going uncompiled."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import CLI_ENV

from curate import DeepfakeScorer
from curate.detectors.head import captured_embeddings
from curate.pipeline.compile import (
    COMPILE_AFTER_SECONDS,
    CompiledModel,
    check_compile,
    compile_notices,
)


def _graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def test_compile_setting_is_checked(tiny_checkpoint):
    assert check_compile("Auto") == "auto"
    assert check_compile(True) is True and check_compile(False) is False
    assert DeepfakeScorer(tiny_checkpoint).compile == "auto"  # the default
    with pytest.raises(ValueError, match="compile must be True, False or 'auto', got 'fast'"):
        DeepfakeScorer(tiny_checkpoint, compile="fast")


def test_auto_leaves_a_small_run_uncompiled(tiny_checkpoint, photo_paths):
    auto = DeepfakeScorer(tiny_checkpoint, device="cpu", dtype="float32", batch_size=2)
    plain = DeepfakeScorer(tiny_checkpoint, device="cpu", dtype="float32", compile=False)
    before = _graphs_compiled()
    got = auto.score_images(photo_paths)
    model = auto.detector.model
    assert isinstance(model, CompiledModel) and not model.is_compiled
    assert 0 < model.eager_seconds < COMPILE_AFTER_SECONDS
    assert _graphs_compiled() == before
    assert not isinstance(plain.detector.model, CompiledModel)
    assert got["fake_prob"] == plain.score_images(photo_paths)["fake_prob"]  # the same path


@pytest.mark.slow
def test_cli_score_of_one_image_compiles_nothing(tiny_checkpoint, photo_paths, tmp_path):
    # Inductor writes every compile to its cache folder: an empty one means none ran.
    cache = tmp_path / "inductor"
    proc = subprocess.run(
        [sys.executable, "-m", "curate.cli", "score", photo_paths[0], "--model", tiny_checkpoint],
        capture_output=True,
        text=True,
        env={**CLI_ENV, "TORCHINDUCTOR_CACHE_DIR": str(cache)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Compil" not in proc.stderr
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


@pytest.mark.slow
def test_auto_compiles_once_its_eager_budget_is_spent(
    tiny_checkpoint, photo_paths, tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setattr("curate.scorer.COMPILE_AFTER_SECONDS", 1e-9)  # one eager batch
    images = photo_paths[:5]  # forward batches of 2, 2 and 1
    exact = DeepfakeScorer(tiny_checkpoint, device="cpu", dtype="float32", compile=False)
    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", dtype="float32", batch_size=2)
    notices: list[str] = []
    before = _graphs_compiled()
    with compile_notices(notices.append):
        got = scorer.score_images(images)
    model = scorer.detector.model
    assert model.is_compiled and model.failed is None and model.compile_seconds > 0
    assert _graphs_compiled() == before + 1  # the short last batch ran eagerly
    assert len(notices) == 2
    assert notices[0].startswith(f"Compiling {tiny_checkpoint} for batches of 2 on cpu")
    assert notices[1].startswith(f"Compiled {tiny_checkpoint} in ")
    assert any(p.is_file() for p in (tmp_path / "inductor").rglob("*"))
    want = exact.score_images(images)["fake_prob"]
    np.testing.assert_allclose(got["fake_prob"], want, atol=1e-5)
    assert len(set(np.round(want, 3))) > 1  # spread scores, not all 0.5

    # Again: compiled batches, no new graph; an embedding hook makes batches run eagerly.
    np.testing.assert_allclose(scorer.score_images(images)["fake_prob"], want, atol=1e-5)
    with captured_embeddings(model) as passes:
        scorer.score_images(images)
    assert [len(p) for p in passes] == [2, 2, 1]
    assert _graphs_compiled() == before + 1


@pytest.mark.slow
def test_a_failed_compile_goes_on_uncompiled(tiny_checkpoint, photo_paths, tmp_path, caplog):
    from torch._inductor import config as inductor_config

    from curate.detectors import load_detector

    detector = load_detector(tiny_checkpoint, device="cpu", dtype="float32")
    # A batch size no other test compiles, so no compiled code is already in memory.
    model = CompiledModel(detector.model, detector.device, 3, name="tiny")
    x = torch.randn(3, 3, 64, 64)
    # A fresh cache (nothing to reuse) and no C++ compiler: inductor cannot build. (Inductor's
    # own `patch`, not monkeypatch: its config objects do not take a plain setattr back.)
    with (
        pytest.MonkeyPatch.context() as mp,
        inductor_config.patch({"cpp.cxx": (str(tmp_path / "no-such-c++"),)}),
        caplog.at_level(logging.WARNING, logger="curate.pipeline.compile"),
        torch.inference_mode(),
    ):
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
        got = model(pixel_values=x).logits
        again = model(pixel_values=x).logits
        want = detector.model(pixel_values=x).logits
    assert not model.is_compiled and "C++ compiler" in model.failed
    assert torch.equal(got, want) and torch.equal(again, want)
    assert [r.getMessage() for r in caplog.records] == [
        f"compiling tiny failed ({model.failed.split(': ', 1)[1]}); scoring goes on uncompiled"
    ]
