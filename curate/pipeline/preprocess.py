"""Resize, crop and normalise images exactly as the checkpoint's own image processor does.

The default path reproduces transformers' PIL processor (`PreprocessConfig` says which
steps): PIL resize with the checkpoint's `resample` filter (with PIL's antialiasing) to
uint8, to a fixed size or with the shortest edge to N, then any centre crops (zero-padded
where the image is smaller), then rescale and normalise in float32. The uint8 work runs on
CPU worker threads (PIL releases the GIL); the float arithmetic runs on the model's device,
so only uint8 crosses to a GPU.

The "torch" path (`resize_on_device`) takes the full decode to the model's device as uint8
and resizes there with `interpolate(..., antialias=True)` to the same size, then crops the
same window: the GPU does the work that bottlenecks a GPU pipeline, at a small, tested cost
in fidelity (README, "Fidelity"). It has twins of PIL's bilinear and bicubic filters only.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from curate.detectors.processors import PreprocessConfig, crop_window


def resize(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """An RGB image resized and cropped to the model's input: HWC uint8."""
    size = cfg.resized_size(*img.size)
    if img.size != size:
        img = img.resize(size, resample=Image.Resampling(cfg.resample))
    arr = np.asarray(img, dtype=np.uint8)
    for crop in cfg.crops:
        arr = _crop(arr, crop)
    if arr.shape != (cfg.height, cfg.width, 3):
        raise ValueError(
            f"image is {arr.shape[1]}x{arr.shape[0]} but the model needs {cfg.width}x{cfg.height} "
            "and the checkpoint's processor does not resize"
        )
    return arr


def _crop(arr: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """transformers' `center_crop` of an HWC array (zero padding where it is too small)."""
    (top, pad_top, pad_bottom), (left, pad_left, pad_right) = (
        crop_window(arr.shape[0], crop[0]),
        crop_window(arr.shape[1], crop[1]),
    )
    arr = arr[
        top : top + crop[0] - pad_top - pad_bottom, left : left + crop[1] - pad_left - pad_right
    ]
    if pad_top or pad_bottom or pad_left or pad_right:
        arr = np.pad(arr, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)))
    return arr


# PIL resample filters that `torch.nn.functional.interpolate` has an antialiased twin for.
TORCH_RESAMPLE = {2: "bilinear", 3: "bicubic"}


def to_device(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A uint8 array on `device`; to a GPU it goes through pinned memory, asynchronously."""
    t = torch.as_tensor(array)
    if device.type != "cuda" or t.device.type == "cuda":
        return t.to(device)
    if not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def pinned_batch(arrays: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Stack equal-shape HWC uint8 arrays in one copy, into pinned memory when bound for a GPU."""
    out = torch.empty(
        (len(arrays), *arrays[0].shape), dtype=torch.uint8, pin_memory=device.type == "cuda"
    )
    np.stack(arrays, out=out.numpy())
    return out


def resize_on_device(
    images: list[np.ndarray | torch.Tensor],
    cfg: PreprocessConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Full-size HWC uint8 images (numpy, or CHW uint8 tensors already on `device`, as nvJPEG
    returns them) -> normalised NCHW `pixel_values`, resized and cropped on `device`.

    Antialiased interpolation of the checkpoint's filter to the size PIL would resize to,
    rounded to uint8 as PIL's output is, the same crop windows, then the same rescale +
    normalise as `normalize`."""
    mode = TORCH_RESAMPLE.get(cfg.resample)
    if mode is None:
        raise ValueError(f"resize='torch' has no equivalent of PIL resample={cfg.resample}")
    size = (cfg.height, cfg.width)
    out = torch.empty((len(images), 3, *size), dtype=torch.float32, device=device)
    for i, img in enumerate(images):
        if isinstance(img, torch.Tensor) and img.device.type == device.type:
            x = img.to(device)[None].float()
        else:
            x = to_device(img, device).permute(2, 0, 1)[None].float()
        width, height = cfg.resized_size(x.shape[-1], x.shape[-2])
        if (height, width) != tuple(x.shape[-2:]):
            x = torch.nn.functional.interpolate(x, size=(height, width), mode=mode, antialias=True)
            x = x.round_().clamp_(0, 255)
        for crop in cfg.crops:
            x = _crop_tensor(x, crop)
        if x.shape[-2:] != size:
            raise ValueError(
                f"image is {x.shape[-1]}x{x.shape[-2]} but the model needs "
                f"{cfg.width}x{cfg.height} and the checkpoint's processor does not resize"
            )
        out[i] = x[0]
    return _rescale_normalize(out, cfg, dtype)


def _crop_tensor(x: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """`_crop` of an NCHW tensor."""
    (top, pad_top, pad_bottom), (left, pad_left, pad_right) = (
        crop_window(x.shape[-2], crop[0]),
        crop_window(x.shape[-1], crop[1]),
    )
    x = x[
        ...,
        top : top + crop[0] - pad_top - pad_bottom,
        left : left + crop[1] - pad_left - pad_right,
    ]
    if pad_top or pad_bottom or pad_left or pad_right:
        x = torch.nn.functional.pad(x, (pad_left, pad_right, pad_top, pad_bottom))
    return x


def normalize(
    batch: np.ndarray | torch.Tensor,
    cfg: PreprocessConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """NHWC uint8 -> NCHW `pixel_values` on `device` in `dtype` (arithmetic in float32)."""
    x = to_device(batch, device).permute(0, 3, 1, 2).to(torch.float32)
    return _rescale_normalize(x, cfg, dtype)


def _rescale_normalize(x: torch.Tensor, cfg: PreprocessConfig, dtype: torch.dtype) -> torch.Tensor:
    device = x.device
    if cfg.do_rescale:
        x = x * cfg.rescale_factor
    if cfg.do_normalize:
        mean = torch.tensor(cfg.image_mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(cfg.image_std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.to(dtype).contiguous()
