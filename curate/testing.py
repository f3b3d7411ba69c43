"""Random-weight detector checkpoints, for tests, benchmarks and offline demos.

No machine of this project's CI reaches the Hugging Face Hub, so tests build checkpoints
with the real architecture and the real checkpoint's processor settings, save them with
`save_pretrained`, and load them through the same path a Hub id takes. Their scores mean
nothing about real or fake: they exercise the pipeline, not the detector.

`build_random_checkpoint` builds the default detector's family (SigLIP, fixed-size bilinear
resize); `build_random_classifier` builds any of `FAMILIES`, each with the image processor
class and settings of a well-known Hub checkpoint of that family.
"""

from __future__ import annotations

import os
from typing import Any

# The real checkpoint's architecture (SigLIP2 base, patch 16, 512x512): 93.5 M parameters.
FULL_SIZE = dict(
    image_size=512, patch_size=16, hidden_size=768, num_hidden_layers=12,
    num_attention_heads=12, intermediate_size=3072,
)  # fmt: skip
TINY = dict(
    image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2,
    num_attention_heads=2, intermediate_size=64,
)  # fmt: skip


def build_random_checkpoint(
    path: str | os.PathLike,
    *,
    id2label: dict[int, str] | None = None,
    classifier_scale: float = 1.0,
    seed: int = 0,
    full_size: bool = False,
    **vision_overrides: Any,
) -> str:
    """Save a random `SiglipForImageClassification` + `SiglipImageProcessor` to `path`.

    `classifier_scale` multiplies the classifier weights: a random tiny model's logits sit
    near 0 (probabilities near 0.5), which hides preprocessing mistakes; scaling spreads them.
    The processor has the real checkpoint's settings (bilinear, rescale 1/255, mean = std =
    0.5) at the model's image size.
    """
    import torch
    from transformers import SiglipConfig, SiglipForImageClassification
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
    from transformers.utils import logging as hf_logging

    # The text half of SiglipConfig warns about token ids a vision-only model never uses.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    vision = dict(FULL_SIZE if full_size else TINY)
    vision.update(vision_overrides)
    id2label = id2label or {0: "Fake", 1: "Real"}
    config = SiglipConfig(
        vision_config=vision,
        id2label={int(k): v for k, v in id2label.items()},
        label2id={v: int(k) for k, v in id2label.items()},
    )
    torch.manual_seed(seed)
    model = SiglipForImageClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(classifier_scale)
        model.classifier.bias.mul_(classifier_scale)
    model.save_pretrained(path, safe_serialization=True)
    size = vision["image_size"]
    SiglipImageProcessorPil(
        size={"height": size, "width": size},
        resample=2,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_convert_rgb=None,
    ).save_pretrained(path)
    return os.fspath(path)


# Per family: the tiny architecture, and the image processor of a real Hub checkpoint.
# Patch 32 at 224 keeps the transformers at 49 tokens; the processors are the Hub's own.
_TINY_VIT = dict(
    image_size=224, patch_size=32, hidden_size=32, num_hidden_layers=2,
    num_attention_heads=2, intermediate_size=64,
)  # fmt: skip
_IMAGENET_DEFAULT = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
_CLIP_NORM = dict(
    image_mean=[0.48145466, 0.4578275, 0.40821073],
    image_std=[0.26862954, 0.26130258, 0.27577711],
)
FAMILIES = {
    # google/vit-base-patch16-224: 224x224 bilinear, mean = std = 0.5.
    "vit": dict(
        processor="ViTImageProcessorPil",
        processor_kwargs=dict(size={"height": 224, "width": 224}, resample=2,
                              image_mean=[0.5] * 3, image_std=[0.5] * 3),
    ),
    # facebook/deit-base-distilled-patch16-224: 256x256 bicubic, centre crop 224, ImageNet.
    "deit": dict(
        processor="DeiTImageProcessorPil",
        processor_kwargs=dict(size={"height": 256, "width": 256}, resample=3, do_center_crop=True,
                              crop_size={"height": 224, "width": 224}, **_IMAGENET_DEFAULT),
    ),
    # facebook/convnext-tiny-224: shortest edge 224 / crop_pct 0.875 = 256, crop 224, bicubic.
    "convnext": dict(
        processor="ConvNextImageProcessorPil",
        processor_kwargs=dict(size={"shortest_edge": 224}, crop_pct=0.875, resample=3,
                              **_IMAGENET_DEFAULT),
    ),
    # openai/clip-vit-base-patch32: shortest edge 224, centre crop 224, bicubic, CLIP mean/std.
    "clip": dict(
        processor="CLIPImageProcessorPil",
        processor_kwargs=dict(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                              do_center_crop=True, resample=3, do_convert_rgb=True, **_CLIP_NORM),
    ),
    # prithivMLmods/open-deepfake-detection: fixed size, bilinear, mean = std = 0.5.
    "siglip": dict(
        processor="SiglipImageProcessorPil",
        processor_kwargs=dict(size={"height": 224, "width": 224}, resample=2,
                              image_mean=[0.5] * 3, image_std=[0.5] * 3),
    ),
}  # fmt: skip


def build_random_classifier(
    path: str | os.PathLike,
    family: str,
    labels: list[str] | tuple[str, ...] = ("Fake", "Real"),
    *,
    spread_on: list[Any] | None = None,
    spread: float = 4.0,
    seed: int = 0,
    processor_overrides: dict[str, Any] | None = None,
) -> str:
    """Save a tiny random image classifier of `family` (one of `FAMILIES`) with `labels`
    (in index order) and that family's real image processor class, configured like its
    well-known Hub checkpoint (`processor_overrides` changes single settings).

    A random tiny model's logits barely move between images (probabilities near one value),
    which hides preprocessing mistakes. With `spread_on` (images: paths, PIL images), the
    head is rescaled so that on those images, through the saved processor, each logit has
    mean 0 and the logit gap (synthetic side minus real side, for a two-class model) has a
    standard deviation of `spread`: probabilities spread over (0, 1)."""
    import torch
    from transformers.models.auto.image_processing_auto import (
        get_image_processor_class_from_name,
    )
    from transformers.utils import logging as hf_logging

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}: use one of {sorted(FAMILIES)}")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    id2label = dict(enumerate(labels))
    torch.manual_seed(seed)
    model = _tiny_model(family, id2label, {v: k for k, v in id2label.items()}).eval()
    spec = FAMILIES[family]
    kwargs = {**spec["processor_kwargs"], **(processor_overrides or {})}
    processor = get_image_processor_class_from_name(spec["processor"])(**kwargs)
    if spread_on:
        _spread_head(model, processor, spread_on, spread)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return os.fspath(path)


def _spread_head(model: Any, processor: Any, images: list[Any], spread: float) -> None:
    """Standardise each logit over `images`, then scale so the gap of the first class
    against the rest has standard deviation `spread`."""
    import torch
    from PIL import Image

    pil = [Image.open(i).convert("RGB") if isinstance(i, (str, os.PathLike)) else i for i in images]
    features = []
    hook = model.classifier.register_forward_hook(lambda m, args, out: features.append(args[0]))
    with torch.no_grad():
        for img in pil:
            model(**processor(images=img, return_tensors="pt"))
        hook.remove()
        h = torch.cat(features).double()
        head = model.classifier
        logits = h @ head.weight.double().T + head.bias.double()
        mean, std = logits.mean(0), logits.std(0).clamp_min(1e-12)
        weight = head.weight.double() / std[:, None]
        bias = -mean / std
        z = (logits - mean) / std
        gap = z[:, 0] - torch.logsumexp(z[:, 1:], dim=1)
        scale = spread / gap.std().clamp_min(1e-12)
        head.weight.copy_(weight * scale)
        head.bias.copy_(bias * scale)


def _tiny_model(family: str, id2label: dict[int, str], label2id: dict[str, int]) -> Any:
    import transformers as tf

    labels = dict(id2label=id2label, label2id=label2id)
    if family == "vit":
        return tf.ViTForImageClassification(tf.ViTConfig(**_TINY_VIT, **labels))
    if family == "deit":
        return tf.DeiTForImageClassification(tf.DeiTConfig(**_TINY_VIT, **labels))
    if family == "convnext":
        config = tf.ConvNextConfig(
            num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], image_size=224, **labels
        )
        return tf.ConvNextForImageClassification(config)
    if family == "clip":
        config = tf.CLIPConfig(vision_config=_TINY_VIT, **labels)
        return tf.CLIPForImageClassification(config)
    config = tf.SiglipConfig(vision_config=_TINY_VIT, **labels)
    return tf.SiglipForImageClassification(config)


def swap_labels(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copy a checkpoint with its two classes in the other order (rows of the classifier and
    `id2label` both swapped): the same detector, stored the other way round."""
    import shutil

    import torch
    from transformers import SiglipForImageClassification

    model = SiglipForImageClassification.from_pretrained(src)
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0))
        model.classifier.bias.copy_(model.classifier.bias.flip(0))
    labels = model.config.id2label
    model.config.id2label = {0: labels[1], 1: labels[0]}
    model.config.label2id = {labels[1]: 0, labels[0]: 1}
    model.save_pretrained(dst, safe_serialization=True)
    shutil.copy(os.path.join(src, "preprocessor_config.json"), dst)
    return os.fspath(dst)


class ReferenceDetector:
    """The reference inference of the default checkpoint's model card
    (prithivMLmods/open-deepfake-detection), kept as the oracle.

    One image at a time: `AutoImageProcessor` (PIL backend, which is what the seed's code
    gets on a machine without torchvision), `SiglipForImageClassification`, softmax. Tests
    compare the scorer against it; the benchmark times it as the baseline.
    """

    def __init__(self, model: str | os.PathLike) -> None:
        from transformers import AutoImageProcessor, SiglipForImageClassification

        self.model = SiglipForImageClassification.from_pretrained(model).eval()
        self.processor = AutoImageProcessor.from_pretrained(model, backend="pil")
        self.id2label = self.model.config.id2label

    def logits(self, image: Any) -> Any:
        """float32 logits (numpy, in `id2label` order) for one image: an RGB PIL image or an
        HWC uint8 array, converted as the seed does (`Image.fromarray(...).convert("RGB")`)."""
        import numpy as np
        import torch
        from PIL import Image

        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        image = image.convert("RGB")
        inputs = self.processor(images=image, return_tensors="pt")
        with torch.no_grad():
            return self.model(**inputs).logits[0].float().numpy()

    def probabilities(self, image: Any) -> dict[str, float]:
        """`{label: probability}` for one image, exactly as the seed's `classify_image`."""
        import torch

        probs = torch.softmax(torch.from_numpy(self.logits(image))[None], dim=1)[0].tolist()
        return {self.id2label[i]: probs[i] for i in range(len(probs))}
