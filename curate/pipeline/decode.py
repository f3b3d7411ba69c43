"""Turn anything image-like into an RGB PIL image, or a reason why it can't be.

Accepted forms: PIL images, `{"bytes", "path"}` dicts (`datasets.Image(decode=False)`),
file paths, encoded bytes, and numpy arrays (HWC or HW, as `ray.data.read_images` gives).
Nothing here raises on a bad image: `read_image` returns `(None, reason)`, a one-line reason
a curator can act on ("truncated file", "permission denied", "a named pipe (FIFO), not an
image file", "image is 20000x20000 = 400,000,000 pixels, over max_pixels=...").

Two limits bound what one image may cost: `max_file_bytes` (bytes read from a file; only
regular files are read, decided before they are opened, so a FIFO or `/dev/zero` cannot hang
or exhaust a run) and `max_pixels` (decoded size, checked from the header before any pixel is
decoded; it replaces Pillow's own `Image.MAX_IMAGE_PIXELS`, see `_open`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import stat
import threading
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# Far above any real photo (a 100 MP camera frame is ~1e8): past this an image is treated as
# a decompression bomb and refused before its pixels are decoded.
DEFAULT_MAX_PIXELS = 150_000_000
# Far above any real image file (a 100 MP 16-bit TIFF is ~600 MB uncompressed, a camera raw
# ~100 MB): past this a file is refused unread, so one odd file cannot exhaust memory.
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024


class ImageReadError(ValueError):
    """An input could not be turned into an image; the message is the row's reason."""


class UnreadableFileError(OSError):
    """A path that is not a regular file curate may read whole; `str()` is the reason."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.filename = path

    def __str__(self) -> str:
        return self.reason


# -- file names ------------------------------------------------------------------------------
_ESCAPED_BYTE = re.compile(r"\\x([0-9a-fA-F]{2})")


def stored_path(path: str | os.PathLike) -> str:
    """`path` as curate stores and prints it: always valid UTF-8.

    A file name that is not valid UTF-8 (Python gives it as lone surrogates) keeps every
    byte that does not decode as a `\\xNN` escape (Python's `backslashreplace`): `café.jpg`
    saved in Latin-1 becomes `caf\\xe9.jpg`. `path_on_disk` turns it back into the name."""
    path = os.fspath(path)
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def path_on_disk(stored: str) -> str:
    """The file name a `stored_path` came from (each `\\xNN` escape back to its byte)."""
    if "\\x" not in stored:
        return stored
    raw = bytearray()
    last = 0
    for m in _ESCAPED_BYTE.finditer(stored):
        raw += stored[last : m.start()].encode("utf-8") + bytes([int(m.group(1), 16)])
        last = m.end()
    raw += stored[last:].encode("utf-8")
    return os.fsdecode(bytes(raw))


def _quoted(path: str) -> str:
    return f"'{stored_path(path)}'"


def _describe(source: Any) -> str:
    if isinstance(source, dict):
        path = source.get("path")
        return _quoted(path) if path else "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        return _quoted(os.fspath(source))
    return type(source).__name__


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 1024 * 1024 else f"{n / (1024 * 1024):,.1f} MiB"


# -- reading files ---------------------------------------------------------------------------
def not_a_file(path: str, mode: int) -> str | None:
    """Why `path`, whose `os.stat` gives `mode`, is not an image file ("a named pipe (FIFO),
    not an image file", ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        if not os.access(path, os.R_OK | os.X_OK):
            return "a folder that cannot be read (permission denied): its images were not listed"
        return "a folder, not an image file"
    kind = (
        "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a special file"
    )
    if os.path.islink(path):
        with contextlib.suppress(OSError):
            return f"a symbolic link to {kind} ({os.path.realpath(path)}), not an image file"
    return f"{kind}, not an image file"


def _stat_error(path: str, exc: OSError) -> OSError:
    if exc.errno == errno.ENOENT and os.path.lexists(path):
        target = os.readlink(path) if os.path.islink(path) else "?"
        return UnreadableFileError(
            f"broken symbolic link: {_quoted(path)} points to {_quoted(target)}, which does not "
            "exist",
            path,
        )
    if exc.errno == errno.ENOENT:
        return exc  # FileNotFoundError: callers say "file not found"
    if exc.errno == errno.ELOOP:
        return UnreadableFileError(
            f"symbolic link loop: {_quoted(path)} (its chain of links never reaches a file)", path
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return UnreadableFileError(f"permission denied: cannot read {_quoted(path)}", path)
    return UnreadableFileError(f"cannot read {_quoted(path)}: {exc.strerror or exc}", path)


def read_file_bytes(
    path: str | os.PathLike, max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES
) -> bytes:
    """The whole content of a regular file, never more than `max_file_bytes` (None: no cap).

    Anything else (a folder, FIFO, socket, device, a symbolic link to one, a broken link, a
    link loop) raises `UnreadableFileError` with the reason, decided by `os.stat` before the
    file is opened; so does a file over the cap, or one that cannot be read. A missing file
    raises `FileNotFoundError`. A `stored_path` with `\\xNN` escapes finds its file."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        alt = path_on_disk(path)
        if alt == path or not os.path.lexists(alt):
            raise _stat_error(path, exc) from None
        return read_file_bytes(alt, max_file_bytes)
    except OSError as exc:
        raise _stat_error(path, exc) from None
    except ValueError as exc:  # a NUL byte in the name
        raise UnreadableFileError(f"invalid file name {_quoted(path)}: {exc}", path) from None
    why = not_a_file(path, st.st_mode)
    if why is not None:
        raise UnreadableFileError(f"{_quoted(path)} is {why}", path)
    if max_file_bytes is not None and st.st_size > max_file_bytes:
        raise _too_big(path, st.st_size, max_file_bytes)
    # Non-blocking: if the path was swapped for a FIFO since the stat, opening still returns,
    # and fstat below refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _stat_error(path, exc) from None
    try:
        st = os.fstat(fd)
        why = not_a_file(path, st.st_mode)
        if why is not None:
            raise UnreadableFileError(f"{_quoted(path)} is {why}", path)
        cap = None if max_file_bytes is None else max_file_bytes + 1
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read() if cap is None else f.read(cap)
    except UnreadableFileError:
        raise
    except OSError as exc:
        raise _stat_error(path, exc) from None
    finally:
        os.close(fd)
    if max_file_bytes is not None and len(data) > max_file_bytes:  # it grew since the stat
        raise _too_big(path, len(data), max_file_bytes)
    return data


def _too_big(path: str, size: int, limit: int) -> UnreadableFileError:
    return UnreadableFileError(
        f"{_quoted(path)} is {_size(size)}, over max_file_bytes={_size(limit)} (not read; raise "
        "max_file_bytes to allow it)",
        path,
    )


def image_bytes(
    source: Any, *, max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES
) -> bytes | None:
    """The encoded file bytes behind a source, when it has any (for metadata readers).

    Paths are read with `read_file_bytes` (regular files only, at most `max_file_bytes`):
    raises `FileNotFoundError` or `UnreadableFileError` (both `OSError`)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, dict):
        if source.get("bytes") is not None:
            return bytes(source["bytes"])
        source = source.get("path")
    if isinstance(source, (str, os.PathLike)):
        return read_file_bytes(source, max_file_bytes)
    return None


def source_path(source: Any) -> str | None:
    """The file path a source names, if any."""
    if isinstance(source, dict):
        return source.get("path")
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "filename", None) or None


# -- pixels ----------------------------------------------------------------------------------
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


# -- decoding --------------------------------------------------------------------------------
_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_limit(max_pixels: int):
    """Pillow's own bomb limit raised to `max_pixels`, so that `max_pixels` is the one limit.

    Pillow reads the module global `Image.MAX_IMAGE_PIXELS` (and warns through the global
    warning filters), so both are changed under a lock, one curate decode thread at a time,
    and put back after. This happens only for an image Pillow refuses and `max_pixels` may
    allow (`max_pixels` raised above twice Pillow's limit): never with the defaults."""
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        # Pillow warns from its limit up, errs from twice it: max_pixels decides, not a warning.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _over_max_pixels(width: int, height: int, max_pixels: int) -> ImageReadError:
    return _bomb(f"{width}x{height} = {width * height:,}", max_pixels)


def _bomb(size: str, max_pixels: int, what: str = "image is") -> ImageReadError:
    return ImageReadError(
        f"{what} {size} pixels, over max_pixels={max_pixels:,} (possible decompression bomb; "
        "raise max_pixels to allow it)"
    )


def _refused_by_pillow(exc: Exception, max_pixels: int, what: str = "image is") -> ImageReadError:
    # Pillow refuses only at twice its limit, which is above max_pixels: the size it names is.
    m = re.search(r"\((\d+) pixels\)", str(exc))
    if m is None:
        return ImageReadError(
            f"{what} more pixels than max_pixels={max_pixels:,} (possible decompression bomb; "
            "raise max_pixels to allow it)"
        )
    size = f"{int(m.group(1)):,}"
    header = _header_size(exc) if what == "image is" else None
    if header is not None:
        size = f"{header[0]}x{header[1]} = {size}"
    return _bomb(size, max_pixels, what)


def _header_size(exc: Exception) -> tuple[int, int] | None:
    """The size of the image Pillow had opened when it refused it, when it is still at hand
    (in the frame of `Image.open` that checked it)."""
    with contextlib.suppress(Exception):
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_name == "_open_core":
                im = tb.tb_frame.f_locals.get("im")
                if im is not None:
                    return tuple(im.size)
            tb = tb.tb_next
    return None


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Pillow's lazy image (header read, pixels not yet decoded), sized within max_pixels."""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        limit = Image.MAX_IMAGE_PIXELS
        if limit is None or max_pixels <= 2 * limit:
            raise _refused_by_pillow(exc, max_pixels) from None
        try:  # max_pixels was raised above Pillow's limit: open again under it
            with _pillow_limit(max_pixels):
                img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as again:
            raise _refused_by_pillow(again, max_pixels) from None
    width, height = img.size
    if width * height > max_pixels:
        raise _over_max_pixels(width, height, max_pixels)
    return img


def _decode(data: bytes, max_pixels: int, draft_size: tuple[int, int] | None) -> Image.Image:
    img = _open(data, max_pixels)
    if draft_size is not None and img.format == "JPEG":
        img.draft("RGB", draft_size)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        if pillow_limit is not None and img.width * img.height > pillow_limit:
            with _pillow_limit(max_pixels):
                img.load()
        else:
            img.load()
    except Image.DecompressionBombError as exc:  # a frame or tile larger than the image
        what = f"{img.format} image has a frame or tile of"
        raise _refused_by_pillow(exc, max_pixels, what) from None
    except Exception as exc:
        exc.curate_image = img  # for the reason: which decoder failed, on what
        raise
    # Same orientation rule as `datasets.Image` decoding, so a path and a decoded row agree;
    # a broken EXIF block costs the orientation, not the image.
    with contextlib.suppress(Exception):
        if img.getexif().get(0x0112) is not None:
            img = ImageOps.exif_transpose(img)
    return img


def _looks_like(data: bytes) -> str | None:
    """What a file Pillow cannot identify looks like, from its first bytes."""
    head = data[:64]
    text = head.lstrip().lower()
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer; the image itself was never downloaded: run git lfs pull"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "a HEIC/HEIF image; this Pillow cannot decode it: pip install pillow-heif"
        if brand in (b"avif", b"avis"):
            return "an AVIF image; this Pillow cannot decode it"
        return "an MP4/QuickTime video"
    signatures = {
        b"%PDF": "a PDF document",
        b"PK\x03\x04": "a ZIP archive",
        b"\x1f\x8b": "a gzip archive",
        b"\x1a\x45\xdf\xa3": "a Matroska/WebM video",
        b"ID3": "an MP3 audio file",
        b"OggS": "an Ogg audio/video file",
        b"7z\xbc\xaf": "a 7-Zip archive",
    }
    for magic, what in signatures.items():
        if head.startswith(magic):
            return what
    if head.startswith(b"RIFF") and head[8:12] in (b"WAVE", b"AVI "):
        return "a RIFF audio/video file"
    if text.startswith((b"<!doctype html", b"<html", b"<head")):
        return "an HTML page; a web page saved under an image name?"
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in data[:4096]):
        return "an SVG drawing; vector images are not supported"
    if text.startswith(b"<?xml"):
        return "an XML file"
    sample = data[:4096]
    try:
        decoded = sample.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the sample's end
        decoded = sample[: exc.start].decode("utf-8") if exc.start > len(sample) - 4 else ""
    if decoded and all(c.isprintable() or c in "\t\r\n\f" for c in decoded):
        return "JSON" if text.startswith((b"{", b"[")) else "text"
    return None


def _plugin_format(exc: BaseException) -> str | None:
    """The format whose Pillow plugin raised `exc` (the innermost `*ImagePlugin` frame)."""
    img = getattr(exc, "curate_image", None)
    if img is not None and img.format:
        return img.format
    fmt = None
    tb = exc.__traceback__
    while tb is not None:
        name = os.path.basename(tb.tb_frame.f_code.co_filename)
        if name.endswith("ImagePlugin.py"):
            fmt = name.removesuffix("ImagePlugin.py").upper()
        tb = tb.tb_next
    return fmt


_TRUNCATED = (
    "truncated",
    "expected to read",
    "ran out of data",
    "premature end",
    "not enough data",
    "unexpected end",
)
_UNSUPPORTED = ("unsupported", "not supported", "unimplemented", "unknown pixel format")
_tiff_codecs: Any = None


def _tiff_codec_configured(code: int) -> bool | None:
    """Whether Pillow's libtiff can decode TIFF compression `code` (None: cannot tell)."""
    global _tiff_codecs
    if _tiff_codecs is None:
        _tiff_codecs = False
        with contextlib.suppress(Exception):  # Linux only: find the libtiff Pillow loaded
            import ctypes

            from PIL import _imaging  # noqa: F401  (loads libtiff)

            with open("/proc/self/maps") as f:
                libs = sorted(set(re.findall(r"(/\S*/libtiff[^/\s]*\.so[^/\s]*)", f.read())))
            if libs:
                fn = ctypes.CDLL(libs[0]).TIFFIsCODECConfigured
                fn.argtypes, fn.restype = [ctypes.c_uint16], ctypes.c_int
                _tiff_codecs = fn
    if not _tiff_codecs:
        return None
    return bool(_tiff_codecs(code))


def _tiff_reason(img: Image.Image | None, message: str) -> str:
    from PIL import TiffImagePlugin

    code = getattr(img, "tag_v2", {}).get(259) if img is not None else None
    name = TiffImagePlugin.COMPRESSION_INFO.get(code, str(code))
    if code is not None and _tiff_codec_configured(int(code)) is False:
        return f"unsupported TIFF compression '{name}' (this Pillow's libtiff cannot decode it)"
    return f"corrupt TIFF data (libtiff: {message}; compression '{name}')"


def _decode_reason(exc: BaseException, data: bytes | None) -> str:
    """What went wrong decoding, in a curator's words (Pillow's message kept as the detail)."""
    fmt = _plugin_format(exc)
    what = f"{fmt} " if fmt else ""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, Image.UnidentifiedImageError):
        looks = _looks_like(data) if data else None
        return "not a recognised image file" + (f" (looks like {looks})" if looks else "")
    if not isinstance(exc, (OSError, ValueError, SyntaxError, EOFError, NotImplementedError)):
        message = f"{type(exc).__name__}: {message}"  # an IndexError deep in a decoder
    low = message.lower()
    if isinstance(exc, MemoryError):
        return "not enough memory to decode it"
    if isinstance(exc, EOFError) or any(t in low for t in _TRUNCATED):
        return f"truncated file (the {what}data ends early)"
    if "ghostscript" in low:
        return "EPS/PostScript: rendering it needs Ghostscript, which is not installed"
    if "cannot find loader" in low:
        return f"{what}file: Pillow knows the format but has no decoder for it"
    if fmt == "TIFF" and "decoder error" in low:
        return _tiff_reason(getattr(exc, "curate_image", None), message)
    if isinstance(exc, NotImplementedError) or any(t in low for t in _UNSUPPORTED):
        return f"unsupported {what}variant ({message})"
    if "cannot load this image" in low:
        return f"corrupt {what}file (no image data Pillow can load)"
    return f"corrupt {what}data ({message})"


def load_image(
    source: Any,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
) -> Image.Image:
    """Decode `source` to an RGB image, raising `ImageReadError` with a one-line reason.

    `max_pixels` refuses larger images from their header, before decoding (Pillow's own
    limit does not apply); `max_file_bytes` refuses larger files unread (None: no cap).
    `draft_size` (JPEG only) lets libjpeg decode at a reduced scale no smaller than that size:
    faster, but not identical to the reference decode (see README, "Fidelity")."""
    if source is None:
        raise ImageReadError("no image (null value)")
    data = None
    try:
        if isinstance(source, Image.Image):
            img = source
            if img.width * img.height > max_pixels:
                raise _over_max_pixels(img.width, img.height, max_pixels)
            img.load()
        elif isinstance(source, np.ndarray):
            img = _array_to_image(source)
        else:
            if isinstance(source, dict) and source.get("bytes") is None and not source.get("path"):
                raise ImageReadError("image dict has neither bytes nor path")
            if not isinstance(source, (dict, bytes, bytearray, memoryview, str, os.PathLike)):
                raise ImageReadError(f"unsupported image type {type(source).__name__}")
            data = image_bytes(source, max_file_bytes=max_file_bytes)
            if len(data) == 0:
                path = source_path(source)
                raise ImageReadError(
                    "empty file (0 bytes)" + (f": {_quoted(path)}" if path else "")
                )
            img = _decode(data, max_pixels, draft_size)
        if img.width == 0 or img.height == 0:
            raise ImageReadError("image has zero width or height")
        return to_rgb(img)
    except ImageReadError:
        raise
    except UnreadableFileError as exc:
        raise ImageReadError(str(exc)) from None
    except FileNotFoundError:
        raise ImageReadError(f"file not found: {_describe(source)}") from None
    except Exception as exc:
        # PIL's decoders signal corrupt, truncated or unsupported data with many types.
        raise ImageReadError(
            f"cannot decode {_describe(source)}: {_decode_reason(exc, data)}"
        ) from None


def read_image(source: Any, **kwargs: Any) -> tuple[Image.Image | None, str | None]:
    """`load_image` that never raises: `(image, None)` or `(None, reason)`."""
    try:
        return load_image(source, **kwargs), None
    except ImageReadError as exc:
        return None, " ".join(str(exc).split())
    except Exception as exc:  # a decoder bug must cost one row, not the run
        return None, f"unexpected {type(exc).__name__} while reading {_describe(source)}: {exc}"
