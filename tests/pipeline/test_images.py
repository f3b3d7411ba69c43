"""curate.images: every input form, every colour mode, and every way an image can be broken."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curate.pipeline.decode import ImageReadError, image_bytes, load_image, read_image, to_rgb


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
        "truncated": "cannot decode",
        "zero_bytes": "not a recognised image",
        "not_an_image": "not a recognised image",
        "missing_file": "file not found",
        "bomb": "decompression bomb",
        "null": "null",
        "garbage_bytes": "not a recognised image",
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
    with pytest.raises(ImageReadError, match="over the limit of 1,000"):
        load_image(photo_paths[0], max_pixels=1000)


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
