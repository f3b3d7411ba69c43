"""A checkpoint's image preprocessing as data: what its own image processor does to an image.

The settings are read through transformers' own PIL image processor class for the checkpoint
(so class defaults, legacy `feature_extractor_type` files, integer sizes and the slow/fast
spellings resolve exactly as transformers resolves them), then reduced to one of the
pipelines curate reproduces bit for bit in `curate.pipeline.preprocess`:

- the stock pipeline (`PilBackend`, which SigLIP, ViT/Swin, DeiT, BEiT, BiT/DINOv2 and CLIP
  use): resize to a fixed height x width, or the shortest edge to N with the aspect ratio
  kept (transformers' rounding), then an optional centre crop (zero-padded where the image
  is smaller than the crop), rescale and per-channel normalisation;
- ConvNeXt's `crop_pct` rule: below 384, the shortest edge goes to `int(N / crop_pct)` and
  the centre N x N is cropped; from 384 up, a plain N x N resize.

Any other processor (its own resize, padding, patching...) is refused with a ModelLoadError
rather than approximated. Images always reach the model as RGB (curate's decoder composites
alpha on white, as `do_convert_rgb` does), so that flag needs nothing more.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from curate.detectors.base import ModelLoadError, import_torchao_quietly

# Methods of transformers' PilBackend that decide pixel values; a processor class that
# overrides none of them runs the stock pipeline.
PIPELINE_METHODS = (
    "preprocess",
    "_preprocess",
    "_preprocess_image_like_inputs",
    "_prepare_image_like_inputs",
    "_standardize_kwargs",
    "process_image",
    "convert_to_rgb",
    "resize",
    "center_crop",
    "rescale",
    "normalize",
    "pad",
)
# Processors that override pipeline methods in ways curate reproduces, and the methods they
# override (checked, so a transformers release that changes them is refused, not guessed).
KNOWN_OVERRIDES = {
    # resize(): the crop_pct rule below.
    "ConvNextImageProcessorPil": frozenset({"resize", "_preprocess"}),
    # Only segmentation maps take another path; images get the stock steps.
    "BeitImageProcessorPil": frozenset(
        {"preprocess", "_preprocess", "_preprocess_image_like_inputs"}
    ),
}
# ConvNeXt crops only below this size; at and above it, it warps to N x N.
CONVNEXT_CROP_BELOW = 384
PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


@dataclass(frozen=True)
class PreprocessConfig:
    """What the checkpoint's processor does, in the order it does it.

    `height` x `width` is the model's input. The resize goes to `shortest_edge` (aspect ratio
    kept) when set, else to `resize_size` (height, width), else to `height` x `width`; then
    each of `crops` (height, width) is cut from the centre in turn; then rescale, normalise."""

    height: int
    width: int
    resample: int = 2  # PIL.Image.BILINEAR
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    shortest_edge: int | None = None
    resize_size: tuple[int, int] | None = None
    crops: tuple[tuple[int, int], ...] = ()
    processor: str = ""  # the transformers class reproduced, for messages

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of a `width` x `height` image after the resize step."""
        if not self.do_resize:
            return width, height
        if self.shortest_edge is not None:
            return shortest_edge_size(width, height, self.shortest_edge)
        h, w = self.resize_size or (self.height, self.width)
        return w, h

    @property
    def draft_size(self) -> tuple[int, int]:
        """(width, height) that a JPEG draft decode must not go below: the resize target (for
        a shortest-edge resize, that edge on both sides), not the smaller crop after it."""
        if self.shortest_edge is not None:
            return self.shortest_edge, self.shortest_edge
        h, w = self.resize_size or (self.height, self.width)
        return w, h

    def describe(self) -> str:
        """One line: what this processor does, for messages and reports."""
        steps = []
        filt = PIL_FILTERS.get(self.resample, f"resample={self.resample}")
        if self.do_resize and self.shortest_edge is not None:
            steps.append(f"shortest edge to {self.shortest_edge} ({filt})")
        elif self.do_resize:
            h, w = self.resize_size or (self.height, self.width)
            steps.append(f"resize to {w}x{h} ({filt})")
        steps += [f"centre crop {w}x{h}" for h, w in self.crops]
        if self.do_rescale:
            steps.append(f"rescale x{self.rescale_factor:.6g}")
        if self.do_normalize:
            steps.append(f"normalise mean {list(self.image_mean)} std {list(self.image_std)}")
        return ", ".join(steps)

    @classmethod
    def from_processor(cls, processor: Any) -> PreprocessConfig:
        """The pipeline of a transformers PIL image processor, or a ModelLoadError saying why
        curate cannot reproduce it."""
        name = type(processor).__name__
        kind = _pipeline_kind(processor)
        size = processor.size
        crops: list[tuple[int, int]] = []
        shortest_edge = resize_size = None
        do_resize = bool(processor.do_resize)
        if do_resize and kind == "convnext":
            edge = getattr(size, "shortest_edge", None)
            if not edge:
                raise _refuse(name, f"its size {_size_text(size)} has no shortest_edge")
            if edge < CONVNEXT_CROP_BELOW:
                crop_pct = getattr(processor, "crop_pct", None)
                if not crop_pct:
                    raise _refuse(name, "its crop_pct is not set")
                shortest_edge = int(edge / crop_pct)
                crops.append((edge, edge))
            else:
                resize_size = (edge, edge)
        elif do_resize:
            shortest_edge, resize_size = _stock_resize(name, size)
        if processor.do_center_crop:
            crop = processor.crop_size
            if not (getattr(crop, "height", None) and getattr(crop, "width", None)):
                raise _refuse(name, f"its crop_size {_size_text(crop)} is not a height and width")
            crops.append((int(crop.height), int(crop.width)))
        if getattr(processor, "do_pad", None):
            raise _refuse(name, "it pads images (do_pad)")
        if crops:
            height, width = crops[-1]
        elif resize_size is not None:
            height, width = resize_size
        elif not do_resize and getattr(size, "height", None) and getattr(size, "width", None):
            height, width = int(size.height), int(size.width)
        else:
            raise _refuse(
                name,
                "it gives each image its own input size (a shortest-edge resize with no crop, "
                "or no resize at all), and curate batches one fixed size",
            )
        resample = processor.resample
        return cls(
            height=height,
            width=width,
            resample=2 if resample is None else int(resample),
            do_resize=do_resize,
            do_rescale=bool(processor.do_rescale),
            rescale_factor=float(processor.rescale_factor),
            do_normalize=bool(processor.do_normalize),
            image_mean=_per_channel(name, "image_mean", processor.image_mean),
            image_std=_per_channel(name, "image_std", processor.image_std),
            shortest_edge=shortest_edge,
            # Stored only where it differs from the model input, so equal configs compare equal.
            resize_size=resize_size if resize_size != (height, width) else None,
            crops=tuple(crops),
            processor=name,
        )

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> PreprocessConfig:
        """From the contents of a `preprocessor_config.json` (either spelling: a slow or fast
        `image_processor_type`, or a legacy `feature_extractor_type`)."""
        return cls.from_processor(pil_processor_from_dict(cfg))


def shortest_edge_size(width: int, height: int, edge: int) -> tuple[int, int]:
    """(width, height) with the shorter side resized to `edge`: transformers'
    `get_resize_output_image_size(size=edge, default_to_square=False)`, its truncation of the
    long side included."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(edge * long / short)
    return (edge, new_long) if width <= height else (new_long, edge)


def crop_window(length: int, crop: int) -> tuple[int, int, int]:
    """One axis of transformers' `center_crop`: (start, pad_before, pad_after). The image's
    [start, start + crop) is kept; an image shorter than the crop is kept whole and padded
    with zeros, the odd pixel after it."""
    if length >= crop:
        return (length - crop) // 2, 0, 0
    before = (crop - length + 1) // 2
    return 0, before, crop - length - before


def pil_processor_from_dict(cfg: dict[str, Any]) -> Any:
    """transformers' PIL image processor for a `preprocessor_config.json` dict."""
    import_torchao_quietly()
    from transformers.models.auto.image_processing_auto import (
        get_image_processor_class_from_name,
    )

    kind = cfg.get("image_processor_type")
    if not kind and cfg.get("feature_extractor_type"):
        kind = str(cfg["feature_extractor_type"]).replace("FeatureExtractor", "ImageProcessor")
    if not kind:
        raise ModelLoadError(
            "The preprocessor config names no image_processor_type (or feature_extractor_type), "
            "so curate cannot tell which processor to reproduce."
        )
    base = kind.removesuffix("Fast").removesuffix("Pil")
    processor_class = get_image_processor_class_from_name(base + "Pil")
    if processor_class is None:
        raise ModelLoadError(
            f"Unsupported image processor {kind!r}: transformers has no PIL version of it, and "
            "curate reproduces only PIL image processors."
        )
    fields = {
        k: v for k, v in cfg.items() if k not in ("image_processor_type", "feature_extractor_type")
    }
    return processor_class.from_dict(fields)


def _pipeline_kind(processor: Any) -> str:
    from transformers.image_processing_backends import PilBackend

    cls = type(processor)
    name = cls.__name__
    if not isinstance(processor, PilBackend):
        raise _refuse(name, "it is not a PIL image processor")
    own = frozenset(
        m for m in PIPELINE_METHODS if getattr(cls, m, None) is not getattr(PilBackend, m)
    )
    if not own:
        return "stock"
    if KNOWN_OVERRIDES.get(name) == own:
        return "convnext" if name == "ConvNextImageProcessorPil" else "stock"
    raise _refuse(name, f"it overrides {', '.join(sorted(own))} of the stock pipeline")


def _stock_resize(name: str, size: Any) -> tuple[int | None, tuple[int, int] | None]:
    """(shortest_edge, resize_size) of PilBackend.resize for `size`, or refuse."""
    edge = getattr(size, "shortest_edge", None)
    others = ("longest_edge", "max_height", "max_width", "min_pixels", "max_pixels")
    if any(getattr(size, k, None) for k in others):
        raise _refuse(name, f"it resizes to {_size_text(size)}")
    if edge:
        return int(edge), None
    if getattr(size, "height", None) and getattr(size, "width", None):
        return None, (int(size.height), int(size.width))
    raise _refuse(name, f"it resizes to {_size_text(size)}")


def _per_channel(name: str, key: str, value: Any) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, (int, float)) else list(value)
    if len(values) != 3:
        raise _refuse(name, f"its {key} {values} is not one value per RGB channel")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def _size_text(size: Any) -> str:
    if size is None:
        return "None"
    items = (
        dataclasses.asdict(size).items() if dataclasses.is_dataclass(size) else dict(size).items()
    )
    return str({k: v for k, v in items if v is not None})


def _refuse(name: str, why: str) -> ModelLoadError:
    return ModelLoadError(
        f"curate cannot reproduce this checkpoint's image processor {name}: {why}. It reproduces "
        "fixed-size and shortest-edge resizes with an optional centre crop (SigLIP, ViT, Swin, "
        "DeiT, BEiT, BiT/DINOv2, CLIP) and ConvNeXt's crop_pct rule, exactly or not at all."
    )
