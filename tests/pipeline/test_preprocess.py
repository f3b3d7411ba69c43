"""curate.pipeline.preprocess against transformers' own PIL image processors, pixel for pixel,
for every family curate reproduces; and the on-device ("torch") path's geometry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from curate.detectors import PreprocessConfig
from curate.detectors.processors import pil_processor_from_dict
from curate.pipeline.decode import load_image
from curate.pipeline.preprocess import normalize, resize, resize_on_device

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
PROCESSORS = {
    "siglip-512-bilinear": {
        "image_processor_type": "SiglipImageProcessor",
        "size": {"height": 512, "width": 512},
        "resample": 2,
    },
    "vit-224-bilinear": {
        "feature_extractor_type": "ViTFeatureExtractor",
        "size": 224,
        "resample": 2,
    },
    "deit-256-crop-224": {
        "feature_extractor_type": "DeiTFeatureExtractor",
        "size": 256,
        "crop_size": 224,
        "do_center_crop": True,
        **IMAGENET,
    },
    "convnext-224-crop-pct": {
        "feature_extractor_type": "ConvNextFeatureExtractor",
        "size": 224,
        "crop_pct": 0.875,
        **IMAGENET,
    },
    "convnext-384-warp": {"image_processor_type": "ConvNextImageProcessor", "size": 384},
    # ConvNeXt's crop, then a second centre crop taller than the first: zero padding.
    "convnext-two-crops-padded": {
        "image_processor_type": "ConvNextImageProcessor",
        "size": {"shortest_edge": 160},
        "crop_pct": 0.9,
        "do_center_crop": True,
        "crop_size": {"height": 171, "width": 121},
    },
    "clip-224-bicubic": {"image_processor_type": "CLIPImageProcessor"},
    "bit-lanczos": {"image_processor_type": "BitImageProcessor", "resample": 1},
    "beit-nearest": {"image_processor_type": "BeitImageProcessor", "resample": 0},
    "clip-crop-larger-than-resize": {
        "image_processor_type": "CLIPImageProcessor",
        "size": {"shortest_edge": 100},
        "crop_size": {"height": 117, "width": 131},
    },
}


@pytest.fixture(scope="module")
def odd_images(photo_paths) -> list[Image.Image]:
    """The example photos, resized copies of odd aspect ratios (wide, tall, smaller than the
    model), and noise: every rounding and crop offset case."""
    photos = [load_image(p) for p in photo_paths]
    rng = np.random.default_rng(0)
    sizes = [(301, 517), (517, 173), (150, 97), (97, 150), (225, 224), (1001, 333)]
    resized = [
        photos[i % len(photos)].resize(s, Image.Resampling.LANCZOS) for i, s in enumerate(sizes)
    ]
    noise = [
        Image.fromarray(rng.integers(0, 256, (90 + 7 * i, 130 - 5 * i, 3), dtype=np.uint8))
        for i in range(3)
    ]
    return photos + resized + noise


def _curate_pixels(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    batch = np.array(resize(img, cfg))[None]
    return normalize(batch, cfg, torch.device("cpu"), torch.float32)[0].numpy()


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_pixels_match_transformers(name, odd_images):
    processor = pil_processor_from_dict(PROCESSORS[name])
    cfg = PreprocessConfig.from_processor(processor)
    for img in odd_images:
        ref = processor(images=img, return_tensors="np")["pixel_values"][0]
        ours = _curate_pixels(img, cfg)
        assert ours.shape == ref.shape, (name, img.size)
        # Same uint8 pixels; the float arithmetic differs by rounding only.
        assert np.abs(ours - ref).max() <= 1e-5, (name, img.size)


def test_a_wrong_crop_offset_is_caught(odd_images):
    """The comparison has power: cropping one pixel off centre fails it."""
    processor = pil_processor_from_dict(PROCESSORS["clip-224-bicubic"])
    cfg = PreprocessConfig.from_processor(processor)
    shifted = dataclasses.replace(cfg, crops=((225, 225),), height=225, width=225)
    img = next(i for i in odd_images if i.size == (97, 150))  # -> 224 x 346, crop offset 61
    ref = processor(images=img, return_tensors="np")["pixel_values"][0]
    ours = _curate_pixels(img, shifted)[:, :224, :224]
    assert np.abs(ours - ref).max() > 0.1


# resize='torch' (antialiased interpolate) against PIL, in uint8 levels per pixel: measured
# a mean of at most 0.27 per image (0.13-0.20 on photos, the rest on noise; single pixels
# differ by up to 7 levels on photos, 21 on noise, where interpolation kernels differ most).
# A wrong geometry (no crop) moves images by 10-70 levels on average.
TORCH_MEAN_LEVELS = 0.5


@pytest.mark.parametrize(
    "name", ["clip-224-bicubic", "convnext-224-crop-pct", "deit-256-crop-224", "vit-224-bilinear"]
)
def test_torch_path_has_the_same_geometry(name, odd_images):
    cfg = PreprocessConfig.from_dict(PROCESSORS[name])
    cpu = torch.device("cpu")
    arrays = [np.array(img) for img in odd_images]
    on_device = resize_on_device(arrays, cfg, cpu, torch.float32).numpy()
    pil = np.stack([_curate_pixels(img, cfg) for img in odd_images])
    levels = np.abs(on_device - pil) * np.asarray(cfg.image_std)[:, None, None] * 255
    assert levels.mean(axis=(1, 2, 3)).max() <= TORCH_MEAN_LEVELS, name
    # Without the crop (a warp to the model size) the same comparison fails by far.
    if cfg.crops:
        warped = dataclasses.replace(cfg, shortest_edge=None, resize_size=None, crops=())
        bad = resize_on_device(arrays, warped, cpu, torch.float32).numpy()
        bad_levels = np.abs(bad - pil) * np.asarray(cfg.image_std)[:, None, None] * 255
        assert bad_levels.mean() > 20 * TORCH_MEAN_LEVELS, name
