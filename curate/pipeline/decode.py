"""Turn anything image-like into an RGB PIL image, or a reason why it can't be.

Accepted forms: PIL images, `{"bytes", "path"}` dicts (`datasets.Image(decode=False)`),
file paths, encoded bytes, and numpy arrays (HWC or HW, as `ray.data.read_images` gives).
Nothing here raises on a bad image: `read_image` returns `(None, reason)`.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# Far above any real photo (a 100 MP camera frame is ~1e8): past this an image is treated as
# a decompression bomb and refused before its pixels are decoded.
DEFAULT_MAX_PIXELS = 150_000_000


class ImageReadError(ValueError):
    """An input could not be turned into an image; the message is the row's reason."""


def _describe(source: Any) -> str:
    if isinstance(source, dict):
        return repr(source.get("path") or "<bytes>")
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    return type(source).__name__


def image_bytes(source: Any) -> bytes | None:
    """The encoded file bytes behind a source, when it has any (for metadata readers)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, dict):
        if source.get("bytes") is not None:
            return bytes(source["bytes"])
        source = source.get("path")
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return f.read()
    return None


def source_path(source: Any) -> str | None:
    """The file path a source names, if any."""
    if isinstance(source, dict):
        return source.get("path")
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "filename", None) or None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB.

    Transparency is composited onto white (what transformers' `convert_to_rgb` does), and
    high-bit-depth greys are scaled to 8 bits instead of being clipped by `convert`."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if img.mode == "F":
            peak = 1.0 if float(np.nanmax(arr, initial=0)) <= 1.0 else 255.0
            arr8 = np.clip(np.nan_to_num(arr) * (255.0 / peak), 0, 255).round().astype(np.uint8)
        elif img.mode == "I" and int(arr.max(initial=0)) <= 255:
            arr8 = np.clip(arr, 0, 255).astype(np.uint8)
        else:
            arr8 = (np.clip(arr, 0, 65535).astype(np.uint32) * 255 // 65535).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _array_to_image(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        raise ImageReadError(f"array of shape {arr.shape} looks channels-first; pass HWC")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageReadError(f"array of shape {arr.shape} is not an HW, HWC RGB or HWC RGBA image")
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    elif arr.dtype.kind == "f":
        arr = np.clip(np.nan_to_num(arr) * 255.0, 0, 255).round().astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        raise ImageReadError(f"array dtype {arr.dtype} is not supported (use uint8)")
    return Image.fromarray(np.ascontiguousarray(arr))


def _open_encoded(fp: Any, max_pixels: int, draft_size: tuple[int, int] | None) -> Image.Image:
    with warnings.catch_warnings():
        # PIL warns (and at 2x raises) on its own bomb limit; ours is checked below instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(fp)
        width, height = img.size
        if width * height > max_pixels:
            raise ImageReadError(
                f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                f"{max_pixels:,} (possible decompression bomb; raise max_pixels to allow it)"
            )
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", draft_size)
        img.load()
    # Same orientation rule as `datasets.Image` decoding, so a path and a decoded row agree.
    if img.getexif().get(0x0112) is not None:
        img = ImageOps.exif_transpose(img)
    return img


def load_image(
    source: Any,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode `source` to an RGB image, raising `ImageReadError` with a one-line reason.

    `draft_size` (JPEG only) lets libjpeg decode at a reduced scale no smaller than that size:
    faster, but not identical to the reference decode (see README, "Fidelity")."""
    if source is None:
        raise ImageReadError("no image (null value)")
    try:
        if isinstance(source, Image.Image):
            img = source
            if img.width * img.height > max_pixels:
                raise ImageReadError(
                    f"image of {img.width}x{img.height} pixels is over the limit of {max_pixels:,}"
                )
            img.load()
        elif isinstance(source, np.ndarray):
            img = _array_to_image(source)
        elif isinstance(source, dict):
            if source.get("bytes") is not None:
                img = _open_encoded(io.BytesIO(source["bytes"]), max_pixels, draft_size)
            elif source.get("path"):
                img = _open_encoded(source["path"], max_pixels, draft_size)
            else:
                raise ImageReadError("image dict has neither bytes nor path")
        elif isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise ImageReadError("empty file (0 bytes)")
            img = _open_encoded(io.BytesIO(bytes(source)), max_pixels, draft_size)
        elif isinstance(source, (str, os.PathLike)):
            img = _open_encoded(os.fspath(source), max_pixels, draft_size)
        else:
            raise ImageReadError(f"unsupported image type {type(source).__name__}")
        if img.width == 0 or img.height == 0:
            raise ImageReadError("image has zero width or height")
        return to_rgb(img)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"file not found: {_describe(source)}") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"decompression bomb: {exc}") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(f"not a recognised image file: {_describe(source)}") from None
    except (OSError, ValueError, SyntaxError, MemoryError, EOFError) as exc:
        # Truncated or corrupt data surfaces as any of these from PIL's decoders.
        raise ImageReadError(f"cannot decode {_describe(source)}: {exc}") from None


def read_image(source: Any, **kwargs: Any) -> tuple[Image.Image | None, str | None]:
    """`load_image` that never raises: `(image, None)` or `(None, reason)`."""
    try:
        return load_image(source, **kwargs), None
    except ImageReadError as exc:
        return None, str(exc)
    except Exception as exc:  # a decoder bug must cost one row, not the run
        return None, f"unexpected {type(exc).__name__} while reading {_describe(source)}: {exc}"
