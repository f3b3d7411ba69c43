"""curate.pipeline.decode: every input form, every colour mode, and every way an image (or a
file posing as one) can be broken, each with a reason a curator can act on; no hang, bounded
memory."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curate.pipeline.decode import (
    ImageReadError,
    UnreadableFileError,
    image_bytes,
    load_image,
    path_on_disk,
    read_file_bytes,
    read_image,
    stored_path,
    to_rgb,
)


def test_every_input_form_gives_the_same_pixels(photo_paths):
    path = photo_paths[0]
    data = Path(path).read_bytes()
    expected = np.asarray(Image.open(path).convert("RGB"))
    forms = {
        "path": path,
        "pathlike": Path(path),
        "bytes": data,
        "bytearray": bytearray(data),
        "dict_bytes": {"bytes": data, "path": None},
        "dict_path": {"bytes": None, "path": path},
        "pil": Image.open(path),
        "numpy": expected.copy(),
    }
    for name, source in forms.items():
        img = load_image(source)
        assert img.mode == "RGB", name
        np.testing.assert_array_equal(np.asarray(img), expected, err_msg=name)


def test_every_mode_becomes_rgb(mode_images):
    for name, path in mode_images.items():
        img, err = read_image(path)
        assert err is None, (name, err)
        assert img.mode == "RGB", name
        expected_size = (120, 160) if name == "exif_rotated_jpeg" else (160, 120)
        assert img.size == expected_size, name


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))  # fully transparent dark pixels
    assert np.asarray(to_rgb(rgba)).min() == 255
    opaque = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    assert tuple(np.asarray(to_rgb(opaque))[0, 0]) == (10, 20, 30)


def test_sixteen_bit_grey_is_scaled_not_clipped(mode_images):
    grey16 = np.asarray(load_image(mode_images["i16_png"]))
    grey8 = np.asarray(load_image(mode_images["l_png"]))
    # `convert("RGB")` on I;16 clips everything above 255 to white; scaling keeps the picture.
    assert grey16.std() > 10
    assert np.abs(grey16.astype(int) - grey8.astype(int)).max() <= 1


def test_numpy_forms(photo_paths):
    rgb = np.asarray(Image.open(photo_paths[0]).convert("RGB"))
    np.testing.assert_array_equal(
        np.asarray(load_image(rgb[..., 0])), np.repeat(rgb[..., :1], 3, -1)
    )
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(np.asarray(load_image(rgba)), rgb)
    np.testing.assert_array_equal(np.asarray(load_image(rgb.astype(np.float32) / 255)), rgb)
    with pytest.raises(ImageReadError, match="channels-first"):
        load_image(rgb.transpose(2, 0, 1))
    with pytest.raises(ImageReadError, match="dtype"):
        load_image(rgb.astype(np.int64))


def test_broken_inputs_give_reasons_and_never_raise(broken_images):
    expected = {
        "truncated": "truncated file (the JPEG data ends early)",
        "zero_bytes": "empty file (0 bytes)",
        "not_an_image": "not a recognised image file (looks like text)",
        "missing_file": "file not found",
        "bomb": "image is 20000x20000 = 400,000,000 pixels, over max_pixels=150,000,000",
        "null": "null",
        "garbage_bytes": "not a recognised image file",
    }
    for name, source in broken_images.items():
        img, reason = read_image(source)
        assert img is None, name
        assert expected[name] in reason, (name, reason)
        assert "\n" not in reason


def test_pixel_limit_is_checked_before_decoding(broken_images, photo_paths):
    # The 20000x20000 PNG would need 400 MB decoded; only its header is read.
    with pytest.raises(ImageReadError, match="decompression bomb"):
        load_image(broken_images["bomb"])
    with pytest.raises(
        ImageReadError, match=r"image is \d+x\d+ = [\d,]+ pixels, over max_pixels=1,000"
    ):
        load_image(photo_paths[0], max_pixels=1000)


def test_max_pixels_is_the_one_limit(monkeypatch, photo_paths):
    """Pillow's own `MAX_IMAGE_PIXELS` neither refuses what max_pixels allows nor words the
    refusal; it is put back as it was."""
    w, h = Image.open(photo_paths[0]).size
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", (w * h) // 3)  # Pillow alone refuses it
    with pytest.raises(Image.DecompressionBombError):
        Image.open(photo_paths[0])
    assert load_image(photo_paths[0], max_pixels=w * h).size == (w, h)
    assert (w * h) // 3 == Image.MAX_IMAGE_PIXELS
    _, reason = read_image(photo_paths[0], max_pixels=w * h - 1)
    assert reason.startswith(f"image is {w}x{h} = {w * h:,} pixels, over max_pixels={w * h - 1:,}")


def test_draft_decoding_is_opt_in(tmp_path, photo_paths):
    big = Image.open(photo_paths[0]).convert("RGB").resize((2048, 2048))
    path = tmp_path / "big.jpg"
    big.save(path, quality=95)
    assert load_image(path).size == (2048, 2048)
    # libjpeg scales by 1/2, 1/4 or 1/8, never below the requested size.
    assert load_image(path, draft_size=(512, 512)).size == (512, 512)
    assert load_image(path, draft_size=(600, 600)).size == (1024, 1024)


def test_image_bytes_reads_every_encoded_form(photo_paths):
    data = Path(photo_paths[0]).read_bytes()
    assert image_bytes(photo_paths[0]) == data
    assert image_bytes({"bytes": None, "path": photo_paths[0]}) == data
    assert image_bytes({"bytes": data, "path": "elsewhere.jpg"}) == data
    assert image_bytes(np.zeros((2, 2, 3), np.uint8)) is None


def _specials(d: Path, photo: str) -> dict[str, str]:
    """{path: what its reason must say} for every kind of path that is not an image file."""
    os.mkfifo(d / "x.png")
    (d / "zero.png").symlink_to("/dev/zero")
    (d / "dangling.jpg").symlink_to(d / "nowhere.jpg")
    (d / "loop1.jpg").symlink_to(d / "loop2.jpg")
    (d / "loop2.jpg").symlink_to(d / "loop1.jpg")
    (d / "dir.jpg").mkdir()
    (d / "fifo-link.png").symlink_to(d / "x.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "s.png"))
    sock.close()
    return {
        str(d / "x.png"): "'{d}/x.png' is a named pipe (FIFO), not an image file",
        str(d / "zero.png"): "is a symbolic link to a device (/dev/zero), not an image file",
        str(d / "dangling.jpg"): "broken symbolic link: '{d}/dangling.jpg' points to",
        str(d / "loop1.jpg"): "symbolic link loop: '{d}/loop1.jpg'",
        str(d / "dir.jpg"): "'{d}/dir.jpg' is a folder, not an image file",
        str(d / "fifo-link.png"): "is a symbolic link to a named pipe (FIFO) ({d}/x.png)",
        str(d / "s.png"): "is a socket, not an image file",
    }


@pytest.mark.timeout(60)
def test_only_regular_files_are_read(tmp_path, photo_paths, tiny_checkpoint):
    """A FIFO named x.png used to hang `read_image` (and the scorer) forever, and a link to
    /dev/zero read until memory ran out: anything but a regular file is refused from its
    `os.stat`, before it is opened."""
    from curate import DeepfakeScorer

    want = _specials(tmp_path, photo_paths[0])
    for path, says in want.items():
        img, reason = read_image(path)
        assert img is None and says.format(d=tmp_path) in reason, (path, reason)
        with pytest.raises(UnreadableFileError, match="not an image file|link"):
            image_bytes({"bytes": None, "path": path})
    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", dtype="float32")
    paths = [*want, photo_paths[0]]
    out = scorer.score_images(paths)
    assert out["deepfake_error"][-1] is None and out["fake_prob"][-1] is not None
    for path, says, reason in zip(want, want.values(), out["deepfake_error"], strict=False):
        assert says.format(d=tmp_path) in reason, (path, reason)


@pytest.mark.timeout(60)
def test_max_file_bytes(tmp_path, photo_paths):
    path = tmp_path / "photo.jpg"
    shutil.copy(photo_paths[0], path)
    size = path.stat().st_size
    assert read_file_bytes(path, size) == path.read_bytes()
    with pytest.raises(UnreadableFileError, match=f"is {size:,} bytes, over max_file_bytes=100 "):
        read_file_bytes(path, 100)
    img, reason = read_image(str(path), max_file_bytes=100)
    assert img is None and "raise max_file_bytes to allow it" in reason
    assert image_bytes(str(path), max_file_bytes=None) == path.read_bytes()
    # Bytes already in memory are not a file: no cap.
    assert read_image(path.read_bytes(), max_file_bytes=100)[1] is None


@pytest.mark.timeout(60)
def test_names_that_are_not_utf8(tmp_path, photo_paths):
    raw = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    shutil.copy(photo_paths[0], raw)
    name = os.fsdecode(raw)  # what os.listdir gives: a lone surrogate for the byte
    stored = stored_path(name)
    assert stored == str(tmp_path / "caf\\xe9.jpg")
    stored.encode("utf-8")  # storable in Parquet / JSON as it is
    assert path_on_disk(stored) == name
    assert stored_path("caf\u00e9.jpg") == "caf\u00e9.jpg"  # a UTF-8 name is left alone
    assert read_image(name)[1] is None
    assert read_image(stored)[1] is None  # the stored form still finds the file
    _, reason = read_image(os.fsdecode(os.fsencode(tmp_path) + b"/gone\xff.jpg"))
    assert reason == f"file not found: '{tmp_path}/gone\\xff.jpg'"


def test_not_an_image_says_what_it_looks_like(tmp_path):
    cases = {
        b"<!DOCTYPE html><html><body>404</body></html>": "looks like an HTML page",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n": "git lfs pull",
        b"%PDF-1.7\n...": "looks like a PDF document",
        b"PK\x03\x04" + bytes(40): "looks like a ZIP archive",
        b"\x00\x00\x00\x18ftypheic" + bytes(20): "pip install pillow-heif",
        b'{"a": 1}': "looks like JSON",
        bytes(range(256)): "not a recognised image file",
    }
    for data, says in cases.items():
        reason = read_image(data)[1]
        assert says in reason and "\n" not in reason, (data[:20], reason)


@pytest.mark.timeout(60)
def test_filesystem_errors_are_not_decode_errors(tmp_path, photo_paths):
    _, reason = read_image(str(tmp_path / "photo.jpg" / "x.jpg"))
    assert reason.startswith("file not found")
    shutil.copy(photo_paths[0], tmp_path / "photo.jpg")
    _, reason = read_image(str(tmp_path / "photo.jpg" / "x.jpg"))
    assert reason == f"cannot read '{tmp_path}/photo.jpg/x.jpg': Not a directory"


CORPUS_READER = textwrap.dedent(
    """
    import json, os, sys, time
    from curate.pipeline.decode import read_image

    root = sys.argv[1]
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            started = time.perf_counter()
            img, reason = read_image(path)
            out[os.path.relpath(path, root)] = {
                "size": None if img is None else list(img.size),
                "reason": reason,
                "seconds": time.perf_counter() - started,
            }
    json.dump(out, sys.stdout)
    """
)


def _address_space_3g() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))


@pytest.mark.timeout(600)
def test_every_pillow_test_image_reads_or_says_why(pillow_corpus):
    """Pillow's own test images (odd modes, fuzzer crashes, truncated files, bombs): each file
    is an image or a one-line reason, with no hang and in 3 GB of address space."""
    done = subprocess.run(
        [sys.executable, "-c", CORPUS_READER, pillow_corpus],
        capture_output=True, text=True, timeout=500, preexec_fn=_address_space_3g,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    assert len(seen) > 1000
    for name, got in seen.items():
        assert (got["size"] is None) != (got["reason"] is None), name
        assert got["seconds"] < 30, name
        reason = got["reason"] or ""
        assert "\n" not in reason and len(reason) < 300, (name, reason)
        # Pillow's internal wording never reaches a curator on its own.
        assert not reason.endswith(("decoder error -2", "cannot load this image")), name
        assert "unexpected" not in reason, (name, reason)
    reasons = {name: got["reason"] for name, got in seen.items()}
    assert sum(r is None for r in reasons.values()) > 800  # most of it is readable
    assert "truncated file (the JPEG data ends early)" in reasons["truncated_jpeg.jpg"]
    assert "truncated file" in reasons["truncated_end_chunk.png"]
    assert reasons["decompression_bomb.gif"].startswith("image is 4,364,696,535 pixels, over")
    assert "over max_pixels=150,000,000" in reasons["decompression_bomb.ico"]
    assert "looks like an HTML page" in reasons[os.path.join("bmp", "html", "bmpsuite.html")]
    assert "looks like a PDF document" in reasons["duplicate_xref_entry.pdf"]
    assert "unsupported BMP variant" in reasons[os.path.join("bmp", "b", "badbitcount.bmp")]
    assert "corrupt SGI data" in reasons["sgi_crash.bin"]
    webp_tiff = reasons["hopper_webp.tif"]
    assert webp_tiff is None or "TIFF compression 'webp'" in webp_tiff
    assert (
        reasons["crash-0c7e0e8e11ce787078f00b5b0ca409a167f070e0.tif"].endswith(
            "corrupt TIFF data (libtiff: decoder error -2; compression 'tiff_adobe_deflate')"
        )
        or "corrupt TIFF data" in reasons["crash-0c7e0e8e11ce787078f00b5b0ca409a167f070e0.tif"]
    )
