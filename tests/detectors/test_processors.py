"""curate.detectors.processors: each family's preprocessing read as transformers reads it, its
geometry exactly transformers' own, and what curate cannot reproduce refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from curate.detectors import ModelLoadError, PreprocessConfig
from curate.detectors.processors import crop_window, shortest_edge_size

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
CLIP = {
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}
# preprocessor_config.json files as the Hub has them, legacy spellings included.
VIT_224 = {  # google/vit-base-patch16-224
    "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 224,
}  # fmt: skip
SWIN_224 = {  # microsoft/swin-tiny-patch4-window7-224
    "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
    "resample": 3, "size": 224, **IMAGENET,
}  # fmt: skip
DEIT_224 = {  # facebook/deit-base-distilled-patch16-224
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "DeiTFeatureExtractor", "resample": 3, "size": 256, **IMAGENET,
}  # fmt: skip
CONVNEXT_224 = {  # facebook/convnext-tiny-224
    "crop_pct": 0.875, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "ConvNextFeatureExtractor", "resample": 3, "size": 224, **IMAGENET,
}  # fmt: skip
CLIP_224 = {  # openai/clip-vit-base-patch32
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "resample": 3, "size": 224, **CLIP,
}  # fmt: skip
SIGLIP_FAST_512 = {  # a SigLIP saved by transformers 4.x's fast processor
    "crop_size": None, "data_format": "channels_first", "default_to_square": True,
    "device": None, "do_center_crop": None, "do_convert_rgb": None, "do_normalize": True,
    "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessorFast", "image_std": [0.5, 0.5, 0.5],
    "input_data_format": None, "resample": 2, "rescale_factor": 0.00392156862745098,
    "return_tensors": None, "size": {"height": 512, "width": 512},
}  # fmt: skip


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (VIT_224, dict(height=224, width=224, resample=2, processor="ViTImageProcessorPil")),
        (SWIN_224, dict(height=224, width=224, resample=3, image_mean=(0.485, 0.456, 0.406))),
        (DEIT_224, dict(height=224, width=224, resize_size=(256, 256), crops=((224, 224),))),
        (CONVNEXT_224, dict(height=224, width=224, shortest_edge=256, crops=((224, 224),))),
        (
            {**CONVNEXT_224, "size": {"shortest_edge": 384}},  # facebook/convnext-*-384: warp
            dict(height=384, width=384, shortest_edge=None, crops=()),
        ),
        (CLIP_224, dict(height=224, width=224, shortest_edge=224, crops=((224, 224),))),
        (SIGLIP_FAST_512, dict(height=512, width=512, resample=2, crops=())),
    ],
)
def test_hub_configs(cfg, expected):
    got = PreprocessConfig.from_dict(cfg)
    for key, value in expected.items():
        assert getattr(got, key) == value, (key, got)


def test_class_defaults_fill_missing_keys():
    """A sparse file gets the processor class's defaults, as transformers gives it."""
    got = PreprocessConfig.from_dict({"image_processor_type": "CLIPImageProcessor"})
    assert (got.shortest_edge, got.crops, got.resample) == (224, ((224, 224),), 3)
    assert got.image_mean == pytest.approx(CLIP["image_mean"])


@pytest.mark.parametrize(
    ("cfg", "why"),
    [
        ({"image_processor_type": "LevitImageProcessor"}, "overrides resize"),
        ({"image_processor_type": "EfficientNetImageProcessor"}, "overrides _preprocess, rescale"),
        (
            {"image_processor_type": "ViTImageProcessor", "size": {"shortest_edge": 224}},
            "its own input size",
        ),
        (
            {"image_processor_type": "ViTImageProcessor", "do_pad": True},
            r"pads images \(do_pad\)",
        ),
        (
            {
                "image_processor_type": "ViTImageProcessor",
                "size": {"shortest_edge": 224, "longest_edge": 448},
                "do_center_crop": True,
                "crop_size": 224,
            },
            "resizes to",
        ),
        ({**CONVNEXT_224, "crop_pct": None}, "crop_pct is not set"),
        ({"size": 224}, "names no image_processor_type"),
    ],
)
def test_refused_processors(cfg, why):
    with pytest.raises(ModelLoadError, match=why) as info:
        PreprocessConfig.from_dict(cfg)
    assert "\n" not in str(info.value)


def test_shortest_edge_size_is_transformers_rounding():
    from transformers.image_transforms import get_resize_output_image_size

    rng = np.random.default_rng(0)
    sizes = [(451, 300), (300, 451), (512, 512), (97, 1000), (1000, 97), (225, 224)]
    sizes += [tuple(int(v) for v in rng.integers(16, 3000, 2)) for _ in range(300)]
    for w, h in sizes:
        for edge in (224, 256, 384):
            ref_h, ref_w = get_resize_output_image_size(
                np.zeros((h, w, 1)),
                edge,
                default_to_square=False,
                input_data_format="channels_last",
            )
            assert shortest_edge_size(w, h, edge) == (ref_w, ref_h), (w, h, edge)


def test_crop_window_is_transformers_center_crop():
    from transformers.image_transforms import center_crop

    for length in range(1, 40):
        for crop in (1, 7, 8, 16, 31):
            line = np.arange(1, length + 1, dtype=np.int64)[None, :, None].repeat(2, axis=0)
            ref = center_crop(line, (2, crop), input_data_format="channels_last")[0, :, 0]
            start, before, after = crop_window(length, crop)
            kept = line[0, start : start + crop - before - after, 0]
            ours = np.concatenate([np.zeros(before, np.int64), kept, np.zeros(after, np.int64)])
            np.testing.assert_array_equal(ours, ref, err_msg=f"length={length} crop={crop}")


def test_draft_size_is_the_resize_target_not_the_crop():
    assert PreprocessConfig.from_dict(CONVNEXT_224).draft_size == (256, 256)
    assert PreprocessConfig.from_dict(DEIT_224).draft_size == (256, 256)
    assert PreprocessConfig.from_dict(VIT_224).draft_size == (224, 224)
