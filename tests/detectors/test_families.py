"""Any Hugging Face image classifier as a detector: for each family, curate's fake_prob against
transformers' own `pipeline("image-classification")` (the oracle), on real photos of odd
aspect ratios; a deliberately wrong preprocessing fails the same comparison.

Each random checkpoint's head is rescaled on these very images (`spread_on`) so its
probabilities spread over (0, 1): a preprocessing mistake then moves them visibly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from curate import DeepfakeScorer
from curate.detectors import ModelLoadError, load_detector
from curate.pipeline.decode import load_image
from curate.pipeline.preprocess import normalize, resize
from curate.testing import build_random_classifier

MAX_DP = 1e-4  # curate against the oracle, fp32 both
WRONG_MIN_DP = 1e-3  # a wrong preprocessing misses the oracle by at least 10x the tolerance


@pytest.fixture(scope="module")
def family_images(photo_paths, jpegs_of_size) -> list[str]:
    """The example photos (square, 3:2, greyscale PNG) and JPEG copies that are tall, wide
    and smaller than the model's input: every resize rounding and crop offset case."""
    return photo_paths + jpegs_of_size(301, 517) + jpegs_of_size(517, 173) + jpegs_of_size(150, 97)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, family_images):
    """`checkpoints(family, labels)`: a tiny random classifier, built once per module."""
    built: dict = {}

    def get(family: str, labels: tuple[str, ...] = ("Fake", "Real")) -> str:
        if (family, labels) not in built:
            path = tmp_path_factory.mktemp("families") / f"{family}-{len(built)}"
            built[family, labels] = build_random_classifier(
                path, family, labels, spread_on=family_images
            )
        return built[family, labels]

    return get


def oracle(checkpoint: str, images: list[str], synthetic: set[str]) -> np.ndarray:
    """P(synthetic) per image from transformers' image-classification pipeline: softmax over
    all classes, the synthetic ones summed. The PIL image processor is pinned: it is the
    model card's reference path, and what the pipeline uses wherever torchvision is absent."""
    key = (checkpoint, tuple(images))
    if key not in _ORACLE:
        _ORACLE[key] = _pipeline_scores(checkpoint, images)
    rows = _ORACLE[key]
    return np.array([sum(s for label, s in row.items() if label in synthetic) for row in rows])


_ORACLE: dict = {}  # the pipeline's scores per (checkpoint, images), reused across tests


def _pipeline_scores(checkpoint: str, images: list[str]) -> list[dict[str, float]]:
    from transformers import AutoImageProcessor, pipeline

    pipe = pipeline(
        "image-classification",
        model=checkpoint,
        image_processor=AutoImageProcessor.from_pretrained(checkpoint, backend="pil"),
        function_to_apply="softmax",
        top_k=None,
        device="cpu",
        dtype=torch.float32,
    )
    return [{r["label"]: r["score"] for r in rows} for rows in pipe(images)]


def scored(scorer: DeepfakeScorer, images: list[str]) -> np.ndarray:
    out = scorer.score_images(images)
    assert all(e is None for e in out["deepfake_error"]), out["deepfake_error"]
    return np.asarray(out["fake_prob"], dtype=np.float64)


@pytest.mark.parametrize("family", ["siglip", "vit", "deit", "convnext", "clip"])
def test_matches_the_transformers_pipeline(family, checkpoints, family_images):
    ckpt = checkpoints(family)
    ref = oracle(ckpt, family_images, {"Fake"})
    assert ref.std() > 0.2, "fixture too weak: probabilities do not spread"
    p = scored(DeepfakeScorer(ckpt, device="cpu", dtype="float32", batch_size=8), family_images)
    assert np.abs(p - ref).max() <= MAX_DP


# Each mistake a reimplementation could make, applied to the loaded detector's preprocessing.
MISTAKES = {
    "vit-bicubic-not-bilinear": ("vit", dict(resample=3)),
    "deit-no-crop": ("deit", dict(resize_size=None, crops=())),
    "convnext-crop-pct-ignored": ("convnext", dict(shortest_edge=224)),
    "clip-bilinear-not-bicubic": ("clip", dict(resample=2)),
    "clip-no-crop": ("clip", dict(shortest_edge=None, crops=())),
    "clip-imagenet-not-clip-mean": ("clip", dict(image_mean=(0.485, 0.456, 0.406))),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_wrong_preprocessing_fails_the_oracle(mistake, checkpoints, family_images):
    family, change = MISTAKES[mistake]
    ckpt = checkpoints(family)
    scorer = DeepfakeScorer(ckpt, device="cpu", dtype="float32", batch_size=8)
    det = scorer.load()
    det.preprocess = dataclasses.replace(det.preprocess, **change)
    p = scored(scorer, family_images)
    assert np.abs(p - oracle(ckpt, family_images, {"Fake"})).max() > WRONG_MIN_DP


def test_three_classes_sum_the_synthetic_ones(checkpoints, family_images):
    """prithivMLmods/AI-vs-Deepfake-vs-Real style: fake_prob = P(Artificial) + P(Deepfake)."""
    ckpt = checkpoints("clip", ("Artificial", "Deepfake", "Real"))
    det = DeepfakeScorer(ckpt, device="cpu", dtype="float32").load()
    assert (det.fake_indices, det.real_indices) == ((0, 1), (2,))
    ref = oracle(ckpt, family_images, {"Artificial", "Deepfake"})
    assert ref.std() > 0.2
    p = scored(DeepfakeScorer(ckpt, device="cpu", dtype="float32"), family_images)
    assert np.abs(p - ref).max() <= MAX_DP
    # Not just one of the two synthetic classes.
    assert np.abs(p - oracle(ckpt, family_images, {"Artificial"})).max() > WRONG_MIN_DP


@pytest.mark.parametrize(
    ("labels", "synthetic"),
    [(("artificial", "human"), {"artificial"}), (("Realism", "Deepfake"), {"Deepfake"})],
)
def test_synonym_labels_score_the_synthetic_class(labels, synthetic, checkpoints, family_images):
    ckpt = checkpoints("vit", labels)
    p = scored(DeepfakeScorer(ckpt, device="cpu", dtype="float32"), family_images)
    assert np.abs(p - oracle(ckpt, family_images, synthetic)).max() <= MAX_DP


def test_synthetic_labels_override(checkpoints, family_images):
    """Unnamed classes are refused by default and scored once the synthetic ones are named."""
    ckpt = checkpoints("convnext", ("LABEL_0", "LABEL_1", "LABEL_2"))
    with pytest.raises(ModelLoadError, match="synthetic_labels="):
        load_detector(ckpt, device="cpu")
    det = load_detector(ckpt, device="cpu", dtype="float32", synthetic_labels="label_0,LABEL_2")
    assert (det.fake_indices, det.real_indices) == ((0, 2), (1,))
    batch = np.stack([resize(load_image(p), det.preprocess) for p in family_images])
    logits = det.logits(normalize(batch, det.preprocess, det.device, det.dtype)).numpy()
    p = 1 / (1 + np.exp(-det.logit_gap(logits)))
    assert np.abs(p - oracle(ckpt, family_images, {"LABEL_0", "LABEL_2"})).max() <= MAX_DP


def test_unreproducible_processor_is_refused_at_load(tmp_path):
    """A processor curate cannot reproduce exactly is refused by name, not approximated."""
    import json

    ckpt = build_random_classifier(tmp_path / "vit", "vit")
    cfg_path = tmp_path / "vit" / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "image_processor_type": "LevitImageProcessor"}))
    with pytest.raises(ModelLoadError, match="LevitImageProcessorPil: it overrides resize"):
        load_detector(ckpt, device="cpu")


# resize="torch" against the exact PIL path through the whole scorer, on these heads whose
# gap std is 4: measured max |d gap| 0.089 (CLIP), 0.065 (DeiT), under 0.05 (ConvNeXt), the
# largest on the small copies that are upsampled. A wrong geometry is caught pixel by pixel
# in tests/pipeline/test_preprocess.py.
TORCH_MAX_DGAP = 0.15


@pytest.mark.parametrize("family", ["clip", "convnext", "deit"])
def test_torch_resize_keeps_the_crop_geometry(family, checkpoints, family_images):
    ckpt = checkpoints(family)
    kw = dict(device="cpu", dtype="float32", batch_size=8)
    pil = scored(DeepfakeScorer(ckpt, resize="pil", **kw), family_images)
    dev = scored(DeepfakeScorer(ckpt, resize="torch", **kw), family_images)
    gap = np.abs(np.log(dev / (1 - dev)) - np.log(pil / (1 - pil)))
    assert 0 < gap.max() <= TORCH_MAX_DGAP  # not identical: the device path really ran
