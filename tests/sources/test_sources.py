"""Resolving a SOURCE (image, folder, Parquet, save_to_disk directory, Hub name) into batches."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curate.sources import SourceError, list_images, resolve_source


def _rows(source, batch_size=3, start=0) -> list[dict]:
    out = []
    for batch in source.batches(batch_size, start=start):
        n = len(next(iter(batch.values())))
        assert n <= batch_size
        out += [{k: v[i] for k, v in batch.items()} for i in range(n)]
    return out


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "imgs"
    for rel in ["b.jpg", "a/z.PNG", "a/b/c.webp", "B.tiff", "x.gif", "y.bmp", "q.jpeg", "w.tif"]:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (5, 5)).save(d / rel)
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.jpg").write_bytes(b"x")
    (d / ".cache").mkdir()
    (d / ".cache" / "skip.jpg").write_bytes(b"x")
    return d


def test_folder_is_recursive_sorted_and_filtered(folder):
    names = ["B.tiff", "a/b/c.webp", "a/z.PNG", "b.jpg", "q.jpeg", "w.tif", "x.gif", "y.bmp"]
    assert [p.replace("\\", "/") for p in list_images(folder)] == names
    source = resolve_source(folder)
    assert (source.kind, source.num_rows, source.image_column) == ("folder", 8, "image")
    rows = _rows(source)
    assert [r["image"]["path"] for r in rows] == names
    assert rows[3]["image"]["bytes"] == (folder / "b.jpg").read_bytes()
    assert [r["image"]["path"] for r in _rows(source, start=5)] == names[5:]
    limited = resolve_source(folder, limit=3, image_column="img")
    assert [r["img"]["path"] for r in _rows(limited, batch_size=2)] == names[:3]


def test_symlinked_folders_are_followed_once(folder):
    (folder / "a" / "loop").symlink_to(folder, target_is_directory=True)
    (folder.parent / "outside").mkdir()
    Image.new("RGB", (5, 5)).save(folder.parent / "outside" / "o.png")
    (folder / "linked").symlink_to(folder.parent / "outside", target_is_directory=True)
    names = [p.replace("\\", "/") for p in list_images(folder)]
    assert "linked/o.png" in names and len(names) == 9
    assert not any("loop" in n for n in names)


def test_single_image(folder):
    source = resolve_source(folder / "b.jpg")
    assert (source.kind, source.num_rows) == ("image", 1)
    assert _rows(source)[0]["image"] == {"bytes": (folder / "b.jpg").read_bytes(), "path": "b.jpg"}


def _parquet_files(tmp_path, rows_per_file=(5, 7), row_group_size=2) -> list[Path]:
    blob = (tmp_path / "blob.png").read_bytes() if (tmp_path / "blob.png").exists() else None
    if blob is None:
        Image.new("RGB", (3, 3)).save(tmp_path / "blob.png")
        blob = (tmp_path / "blob.png").read_bytes()
    paths, n = [], 0
    for k, count in enumerate(rows_per_file):
        t = pa.table(
            {
                "id": list(range(n, n + count)),
                "picture": [{"bytes": blob, "path": f"{i}.png"} for i in range(n, n + count)],
            }
        )
        path = tmp_path / f"part-{k}.parquet"
        pq.write_table(t, path, row_group_size=row_group_size)
        paths.append(path)
        n += count
    return paths


def test_parquet_files_any_start(tmp_path):
    _parquet_files(tmp_path)
    source = resolve_source(str(tmp_path / "part-*.parquet"))
    assert (source.kind, source.num_rows, source.image_column) == ("parquet", 12, "picture")
    for start in range(13):
        for batch_size in (1, 3, 5):
            assert [r["id"] for r in _rows(source, batch_size, start)] == list(range(start, 12))
    limited = resolve_source(str(tmp_path / "part-*.parquet"), limit=6)
    assert [r["id"] for r in _rows(limited, 4, start=2)] == [2, 3, 4, 5]
    assert resolve_source(tmp_path / "part-1.parquet").num_rows == 7


def test_parquet_column_errors(tmp_path):
    (path,) = _parquet_files(tmp_path, rows_per_file=(3,))
    with pytest.raises(SourceError, match="has no column 'img' .*columns: id, picture"):
        resolve_source(path, image_column="img")
    pq.write_table(pa.table({"a": [1], "b": ["x"]}), tmp_path / "plain.parquet")
    with pytest.raises(SourceError, match="cannot tell which column"):
        resolve_source(tmp_path / "plain.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(SourceError, match="cannot read .*bad.parquet as Parquet"):
        resolve_source(tmp_path / "bad.parquet")
    with pytest.raises(SourceError, match="no files match"):
        resolve_source(str(tmp_path / "nothing-*.parquet"))


def test_saved_dataset_dict_needs_a_split(tmp_path, photo_paths):
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["a", "b"])})
    dd = DatasetDict(
        train=Dataset.from_dict(
            {"image": photo_paths, "label": [0, 1, 0, 1, 0]}, features=features
        ),
        test=Dataset.from_dict({"image": photo_paths[:2], "label": [1, 1]}, features=features),
    )
    dd.save_to_disk(tmp_path / "dd")
    with pytest.raises(SourceError, match="has splits .*pass --split"):
        resolve_source(tmp_path / "dd")
    with pytest.raises(SourceError, match="no split 'valid'"):
        resolve_source(tmp_path / "dd", split="valid")
    source = resolve_source(tmp_path / "dd", split="test")
    assert (source.kind, source.num_rows) == ("dataset", 2)
    assert source.features["label"] == ClassLabel(names=["a", "b"])
    rows = _rows(source)
    assert rows[0]["label"] == 1
    assert rows[1]["image"]["bytes"] == Path(photo_paths[1]).read_bytes()  # undecoded
    dd["train"].save_to_disk(tmp_path / "one")
    assert resolve_source(tmp_path / "one").num_rows == 5


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        resolve_source(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(SourceError, match="no images found"):
        resolve_source(tmp_path / "empty")
    with pytest.raises(SourceError, match="--limit must be at least 1"):
        resolve_source(tmp_path / "empty", limit=0)
    # Offline (the tests set HF_HUB_OFFLINE=1), a Hub name is a clear error, not a traceback.
    with pytest.raises(SourceError, match="Hugging Face Hub dataset failed"):
        resolve_source("someone/some-dataset", split="train")


def test_streamed_dataset_path(tmp_path):
    """The Hub path (streaming `load_dataset`, skip/take for resuming), run on a local folder in
    the Hub's repository layout since the tests cannot reach the Hub."""
    from curate.sources import _hub_source

    (tmp_path / "repo" / "data").mkdir(parents=True)
    (path,) = _parquet_files(tmp_path, rows_per_file=(5,))
    path.rename(tmp_path / "repo" / "data" / "train-00000-of-00001.parquet")
    source = _hub_source(str(tmp_path / "repo"), None, "train", None, None, None)
    assert (source.kind, source.image_column) == ("hub", "picture")
    assert [r["id"] for r in _rows(source, 2, start=2)] == [2, 3, 4]
    assert _rows(source)[0]["picture"]["bytes"] == (tmp_path / "blob.png").read_bytes()
    limited = _hub_source(str(tmp_path / "repo"), None, "train", 3, None, None)
    assert limited.num_rows == 3
    assert [r["id"] for r in _rows(limited, 2, start=1)] == [1, 2]
