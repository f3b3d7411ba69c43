"""WebDataset shards for the tests, written with the `webdataset` library itself (and cut with
plain file operations where a test needs a broken one), from the project's real photos."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import webdataset as wds
from PIL import Image


def encoded(photo: str, fmt: str = "JPEG", size: tuple[int, int] = (64, 48)) -> bytes:
    """A real photo, resized small, encoded as `fmt`."""
    buf = io.BytesIO()
    Image.open(photo).convert("RGB").resize(size).save(buf, format=fmt)
    return buf.getvalue()


def write_shard(path: Path, samples: list[dict]) -> Path:
    """`samples` (dicts of `__key__` and extension -> bytes or str) into a tar shard, in order;
    a fixed mtime so two shards written alike are byte-identical."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path), mtime=1_700_000_000) as sink:
        for sample in samples:
            sink.write(sample)
    return path


def plain_samples(photos: list[str], prefix: str, n: int) -> list[dict]:
    """`n` samples of a JPEG, its JSON metadata and a caption, as img2dataset writes them."""
    out = []
    for i in range(n):
        key = f"{prefix}{i:04d}"
        meta = {"key": key, "url": f"https://example.com/{key}.jpg", "width": 64, "height": 48}
        out.append(
            {
                "__key__": key,
                "jpg": encoded(photos[i % len(photos)]),
                "json": json.dumps(meta),
                "txt": f"caption of {key}",
            }
        )
    return out


def mixed_shards(folder: Path, photos: list[str]) -> list[Path]:
    """Three shards: a plain one; one with a sample holding two images (jpg and png), one
    with no image, one whose JPEG is corrupt; and a final shard cut off in the middle of a
    member (its first samples whole)."""
    first = write_shard(folder / "00000.tar", plain_samples(photos, "0", 4))
    odd = plain_samples(photos, "1", 5)
    odd[1]["png"] = encoded(photos[2], "PNG")  # two image members: jpg is the image
    del odd[2]["jpg"]  # no image member at all
    odd[3]["jpg"] = odd[3]["jpg"][: len(odd[3]["jpg"]) // 3]  # a corrupt (truncated) JPEG
    second = write_shard(folder / "00001.tar", odd)
    last = write_shard(folder / "00002.tar", plain_samples(photos, "2", 4))
    cut_in_member(last, "20002.jpg")
    return [first, second, last]


def cut_in_member(path: Path, name: str) -> None:
    """Truncate the shard at `path` halfway through the data of member `name`."""
    with tarfile.open(path) as tar:
        member = tar.getmember(name)
    with open(path, "r+b") as f:
        f.truncate(member.offset_data + member.size // 2)
