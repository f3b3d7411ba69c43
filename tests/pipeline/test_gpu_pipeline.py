"""The GPU pipeline's code paths, run on CPU so CI covers them: resize on the device, the
forward batch that halves on out-of-memory, batch_size="auto", nvJPEG's CPU fallback and
torch.compile. Tests marked `gpu` repeat the fidelity checks on CUDA and skip without it."""

from __future__ import annotations

import io
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from curate import DeepfakeScorer
from curate.pipeline.nvjpeg import _nvjpeg_input, decode_jpegs_on_device

# resize="torch" against the exact PIL path, measured on a 512x512 random SigLIP with a
# logit-gap std of ~4 (README "Fidelity" quotes these): ~1 MP JPEGs, the case the GPU
# pipeline is for, differ by at most 0.0028 in logits; small images upsampled to 512 (and
# noise, the worst case for interpolation) by at most 0.0082.
TORCH_RESIZE_MAX_DLOGIT_1MP = 0.005
TORCH_RESIZE_MAX_DLOGIT_SMALL = 0.015

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def jpegs_1mp(jpegs_of_size) -> list[str]:
    return jpegs_of_size(1200, 900)


@pytest.fixture(scope="module")
def small_images(photo_paths) -> list:
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (90 + 7 * i, 130 - 5 * i, 3), dtype=np.uint8) for i in range(4)]
    return photo_paths + noise


def _logits(out: dict) -> np.ndarray:
    assert all(e is None for e in out["deepfake_error"]), out["deepfake_error"]
    return np.stack([out["fake_logit"], out["real_logit"]], axis=1)


def test_torch_resize_bound(checkpoint_512, jpegs_1mp, small_images):
    kw = dict(device="cpu", dtype="float32", with_logits=True, batch_size=4)
    pil = DeepfakeScorer(checkpoint_512, resize="pil", **kw)
    dev = DeepfakeScorer(checkpoint_512, resize="torch", **kw)
    assert dev.resize_mode() == "torch" and pil.resize_mode() == "pil"
    big = np.abs(_logits(dev.score_images(jpegs_1mp)) - _logits(pil.score_images(jpegs_1mp)))
    assert 0 < big.max() <= TORCH_RESIZE_MAX_DLOGIT_1MP  # not identical: the path really ran
    small = _logits(dev.score_images(small_images)) - _logits(pil.score_images(small_images))
    assert np.abs(small).max() <= TORCH_RESIZE_MAX_DLOGIT_SMALL


def test_torch_resize_catches_a_wrong_filter(checkpoint_512, jpegs_1mp):
    """The bound has power: resizing on the device without antialiasing breaks it."""
    import curate.pipeline.preprocess as pre

    kw = dict(device="cpu", dtype="float32", with_logits=True, batch_size=4)
    ref = _logits(DeepfakeScorer(checkpoint_512, resize="pil", **kw).score_images(jpegs_1mp))
    real_interpolate = torch.nn.functional.interpolate

    def aliased(*args, **kwargs):
        return real_interpolate(*args, **{**kwargs, "antialias": False})

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pre.torch.nn.functional, "interpolate", aliased)
        bad = _logits(DeepfakeScorer(checkpoint_512, resize="torch", **kw).score_images(jpegs_1mp))
    assert np.abs(bad - ref).max() > 5 * TORCH_RESIZE_MAX_DLOGIT_1MP  # measured 0.048


def test_auto_resize_is_exact_on_cpu(tiny_checkpoint, photo_paths):
    """The CPU default stays the reference's PIL path, bit for bit."""
    auto = DeepfakeScorer(tiny_checkpoint, device="cpu", dtype="float32", with_logits=True)
    assert auto.resize == "auto" and auto.resize_mode() == "pil"
    pil = DeepfakeScorer(
        tiny_checkpoint, device="cpu", dtype="float32", with_logits=True, resize="pil"
    )
    np.testing.assert_array_equal(
        _logits(auto.score_images(photo_paths)), _logits(pil.score_images(photo_paths))
    )


def test_torch_resize_keeps_broken_rows(tiny_checkpoint, photo_paths, broken_images):
    broken = list(broken_images.values())
    batch = photo_paths + broken
    out = DeepfakeScorer(tiny_checkpoint, device="cpu", resize="torch", batch_size=3)(
        {"image": batch}
    )
    n = len(photo_paths)
    assert all(p is not None for p in out["fake_prob"][:n])
    assert all(p is None for p in out["fake_prob"][n:])
    assert all(e for e in out["deepfake_error"][n:])


def _fail_when_batch_exceeds(scorer: DeepfakeScorer, limit: int, calls: list[int]) -> None:
    """Fault injection: the model's forward raises the error CUDA raises when a batch does not
    fit, for batches above `limit` — a GPU running out of memory, simulated on CPU."""
    net = scorer.load().model
    net = getattr(net, "_orig_mod", net)  # under a compile wrapper, the module it runs
    real_forward = net.forward

    def forward(*args, pixel_values, **kwargs):
        calls.append(pixel_values.shape[0])
        if pixel_values.shape[0] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(*args, pixel_values=pixel_values, **kwargs)

    net.forward = forward


def test_out_of_memory_halves_the_batch(tiny_checkpoint, photo_paths, mode_images):
    images = photo_paths + list(mode_images.values())  # 14 images
    expected = DeepfakeScorer(tiny_checkpoint, device="cpu", batch_size=8).score_images(images)
    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", batch_size=8)
    calls: list[int] = []
    _fail_when_batch_exceeds(scorer, 3, calls)
    out = scorer.score_images(images)
    assert out["deepfake_label"] == expected["deepfake_label"]
    np.testing.assert_allclose(out["fake_prob"], expected["fake_prob"], atol=1e-6)
    # 8 fails, 4 fails, 2 fits; the halved size is remembered for the next chunk.
    assert calls[:3] == [8, 4, 2] and max(calls[3:]) <= 2
    assert scorer._forward_batches.limit == 2


def test_out_of_memory_at_one_image_raises(tiny_checkpoint, photo_paths):
    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", batch_size=4)
    _fail_when_batch_exceeds(scorer, 0, [])
    with pytest.raises(torch.OutOfMemoryError):
        scorer.score_images(photo_paths)


def test_auto_batch_size_and_option_checks(tiny_checkpoint, photo_paths):
    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", batch_size="auto")
    assert scorer.chunk_size() == 8
    assert all(e is None for e in scorer.score_images(photo_paths)["deepfake_error"])
    clone = pickle.loads(pickle.dumps(DeepfakeScorer(tiny_checkpoint, resize="torch")))
    assert clone.resize == "torch" and clone.batch_size == 16
    for bad in (0, -1, "big", 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            DeepfakeScorer(tiny_checkpoint, batch_size=bad)
    with pytest.raises(ValueError, match="resize"):
        DeepfakeScorer(tiny_checkpoint, resize="bicubic")
    with pytest.raises(ValueError, match="decode"):
        DeepfakeScorer(tiny_checkpoint, decode="gpu")
    with pytest.raises(ValueError, match="nvjpeg"):
        DeepfakeScorer(tiny_checkpoint, decode="nvjpeg", resize="pil")
    with pytest.raises(ValueError, match="CUDA"):
        DeepfakeScorer(tiny_checkpoint, device="cpu", decode="nvjpeg").load()


def test_nvjpeg_takes_only_what_it_decodes_like_the_cpu(mode_images, broken_images, photo_paths):
    jpeg = _nvjpeg_input(mode_images["rgb_jpeg"], 10**9)
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    with open(mode_images["rgb_jpeg"], "rb") as f:
        assert _nvjpeg_input({"bytes": f.read(), "path": None}, 10**9) == jpeg
    assert _nvjpeg_input(mode_images["rgb_jpeg"], 100) is None  # over max_pixels: CPU reports it
    for kind in ("cmyk_jpeg", "exif_rotated_jpeg", "rgba_png", "webp"):
        assert _nvjpeg_input(mode_images[kind], 10**9) is None, kind
    for kind in ("zero_bytes", "not_an_image", "missing_file", "null", "garbage_bytes"):
        assert _nvjpeg_input(broken_images[kind], 10**9) is None, kind


def test_nvjpeg_falls_back_per_image(monkeypatch, mode_images, photo_paths):
    """A stand-in for torchvision's `decode_jpeg` (PIL on CPU, refusing one file) checks the
    batch-then-one-by-one fallback; the real nvJPEG runs in the `gpu` test below."""
    with open(mode_images["rgb_jpeg"], "rb") as f:
        refused = f.read()
    batch_calls = []

    def decode_jpeg(data, mode=None, device=None):
        if isinstance(data, list):
            batch_calls.append(len(data))
            return [decode_jpeg(d, mode, device) for d in data]
        if bytes(data.numpy()) == refused:
            raise RuntimeError("nvjpeg: unsupported")
        arr = np.asarray(Image.open(io.BytesIO(bytes(data.numpy()))).convert("RGB"))
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    io_mod = types.ModuleType("torchvision.io")
    io_mod.decode_jpeg = decode_jpeg
    io_mod.ImageReadMode = types.SimpleNamespace(RGB="RGB")
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.io", io_mod)
    jpegs = [p for p in photo_paths if p.endswith(".jpg")]
    items = [jpegs[0], mode_images["rgb_jpeg"], mode_images["rgba_png"], jpegs[1]]
    out = decode_jpegs_on_device(items, torch.device("cpu"), 10**9)
    assert batch_calls == [3] and sorted(out) == [0, 3]
    assert tuple(out[0].shape) == (3, *reversed(Image.open(jpegs[0]).size))


def test_compile(tiny_checkpoint, photo_paths):
    kw = dict(device="cpu", dtype="float32", batch_size=4)
    plain = DeepfakeScorer(tiny_checkpoint, **kw).score_images(photo_paths)
    compiled = DeepfakeScorer(tiny_checkpoint, compile=True, **kw)
    out = compiled.score_images(photo_paths)
    assert compiled.detector.model.is_compiled
    np.testing.assert_allclose(out["fake_prob"], plain["fake_prob"], atol=1e-5)


@pytest.mark.gpu
@needs_cuda
def test_gpu_pipeline_matches_cpu(checkpoint_512, jpegs_1mp, broken_images, monkeypatch):
    """On CUDA: resize on the GPU (and nvJPEG when torchvision is there) in fp32 stays within
    the CPU bound of the exact path; broken rows still come back as rows."""
    # TF32 convolutions (cuDNN's default) would add their own error to the comparison.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    images = jpegs_1mp + list(broken_images.values())
    n = len(jpegs_1mp)
    ref = DeepfakeScorer(checkpoint_512, device="cpu", with_logits=True).score_images(jpegs_1mp)
    decodes = ["cpu"]
    try:
        import torchvision.io  # noqa: F401

        decodes.append("nvjpeg")
    except Exception:
        pass
    for decode in decodes:
        gpu = DeepfakeScorer(
            checkpoint_512, device="cuda", dtype="float32", decode=decode, with_logits=True
        )
        assert gpu.resize_mode() == "torch"
        out = gpu.score_images(images)
        assert all(p is None for p in out["fake_prob"][n:])
        got = {k: v[:n] for k, v in out.items()}
        assert np.abs(_logits(got) - _logits(ref)).max() <= 2 * TORCH_RESIZE_MAX_DLOGIT_1MP


@pytest.mark.gpu
@needs_cuda
def test_gpu_auto_batch_size(checkpoint_512, jpegs_1mp):
    scorer = DeepfakeScorer(checkpoint_512, device="cuda", batch_size="auto")
    assert 1 <= scorer.chunk_size() <= 512
    assert all(e is None for e in scorer.score_images(jpegs_1mp)["deepfake_error"])
