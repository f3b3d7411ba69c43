"""Random-weight SigLIP detector checkpoints, for tests, benchmarks and offline demos.

No machine of this project's CI reaches the Hugging Face Hub, so tests build checkpoints
with the real architecture and the real checkpoint's processor settings, save them with
`save_pretrained`, and load them through the same path a Hub id takes. Their scores mean
nothing about real or fake: they exercise the pipeline, not the detector.
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
    """The model card's reference inference (`../shared/seed/`), kept as the oracle.

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
