"""WebDataset shards as a source: patterns, one row per sample with its members as columns,
and a row with a reason for every sample that cannot be scored."""

from __future__ import annotations

import json
import shutil

import pytest
from source_rows import rows
from wds_shards import encoded, mixed_shards, plain_samples, write_shard

from curate.sources import SourceError
from curate.sources.webdataset import expand_braces, shard_paths, webdataset_source


@pytest.fixture
def shards(tmp_path, photo_paths):
    return mixed_shards(tmp_path / "shards", photo_paths)


@pytest.mark.parametrize(
    "pattern",
    ["s/{00000..00499}.tar", "{a,b}-{8..10}", "{1..03}", "{10..1..3}", "x{a,{b,c}}", "{c..a}",
     "{-1..2}", "{}", "a{x}b", "{,a}", "plain.tar"],
)  # fmt: skip
def test_brace_patterns_expand_as_the_webdataset_library_does(pattern):
    from braceexpand import braceexpand  # what `webdataset` expands its URLs with

    assert expand_braces(pattern) == list(braceexpand(pattern))


def test_patterns_globs_and_folders_name_the_shards(tmp_path, shards):
    folder = tmp_path / "shards"
    names = [str(p) for p in shards]
    assert shard_paths(str(folder / "{00000..00002}.tar")) == names
    assert shard_paths(str(folder / "*.tar")) == names
    assert shard_paths(str(folder)) == names
    assert shard_paths(names[0]) == names[:1]
    assert shard_paths(str(tmp_path / "nothing.parquet")) is None
    with pytest.raises(SourceError, match=r"1 of the 4 shards .* do not exist \(first: .*00003"):
        shard_paths(str(folder / "{00000..00003}.tar"))
    with pytest.raises(SourceError, match="no tar shards match"):
        shard_paths(str(folder / "*.tgz"))


def test_each_sample_is_a_row_with_its_members(shards, photo_paths):
    source = webdataset_source(str(shards[0].parent / "{00000..00001}.tar"))
    assert source.kind == "webdataset" and source.num_rows is None
    assert [str(s.location) for s in source.shards] == [str(p) for p in shards[:2]]
    got = rows(source, batch_size=3)
    assert [r["__key__"] for r in got] == [f"0{i:04d}" for i in range(4)] + [
        f"1{i:04d}" for i in range(5)
    ]
    first = got[0]
    assert first["__url__"] == str(shards[0])
    assert first["image"] == {"bytes": encoded(photo_paths[0]), "path": "00000.jpg"}
    assert json.loads(first["json"])["key"] == "00000"
    assert first["txt"] == "caption of 00000"
    assert first["__reason__"] is None
    assert set(first) == {"__key__", "__url__", "image", "json", "txt", "__reason__"}


def test_odd_samples_become_rows_with_reasons(shards, photo_paths):
    got = rows(webdataset_source(str(shards[1])))
    two_images, no_image, corrupt = got[1], got[2], got[3]
    assert two_images["image"]["path"] == "10001.jpg"  # jpg before png
    assert two_images["__reason__"] is None
    assert two_images["png"] == encoded(photo_paths[2], "PNG")  # the other one: bytes
    assert got[0]["png"] is None
    assert no_image["image"] is None
    assert "has no image member" in no_image["__reason__"]
    assert "it has json, txt" in no_image["__reason__"]
    assert "--image-member" in no_image["__reason__"]
    assert corrupt["__reason__"] is None  # the source reads it; the scorer says why
    assert len(corrupt["image"]["bytes"]) < len(encoded(photo_paths[3]))


def test_columns_are_the_first_shards_members(shards, caplog):
    got = rows(webdataset_source(str(shards[0].parent / "{00000..00001}.tar")))
    assert "png" not in got[5]  # 00000.tar has no png members: not a column
    assert "00001.tar has members (png) that the first shard's samples do not" in caplog.text


def test_image_member_picks_the_extension(shards):
    got = rows(webdataset_source(str(shards[1]), image_member="png"))
    assert got[1]["image"]["path"] == "10001.png"
    assert got[1]["jpg"] is not None  # the other image member is a column now
    assert "has no image member (png" in got[0]["__reason__"]
    with pytest.raises(SourceError, match="--image-member needs an extension"):
        webdataset_source(str(shards[1]), image_member=" , ")


def test_a_truncated_final_shard_is_rows_with_a_reason_not_a_lost_shard(shards):
    got = rows(webdataset_source(str(shards[0].parent)))
    last = [r for r in got if r["__url__"] == str(shards[2])]
    assert [r["__key__"] for r in last] == ["20000", "20001", "20002"]
    assert [r["__reason__"] for r in last[:2]] == [None, None]
    assert "truncated" in last[2]["__reason__"] and last[2]["image"] is None


def test_a_shard_that_cannot_be_opened_is_a_row(tmp_path, shards):
    folder = tmp_path / "shards"
    source = webdataset_source(str(folder))
    shards[0].unlink()  # gone between listing and reading
    got = rows(source.shards[0])
    assert len(got) == 1 and got[0]["__key__"] is None
    assert "cannot open shard" in got[0]["__reason__"]


def test_reading_from_any_row_and_a_limit(shards):
    pattern = str(shards[0].parent / "{00000..00001}.tar")
    every = rows(webdataset_source(pattern), batch_size=2)
    assert rows(webdataset_source(pattern), batch_size=2, start=3) == every[3:]
    limited = webdataset_source(pattern, limit=6)
    assert limited.num_rows == 6 and rows(limited, batch_size=4) == every[:6]


def test_identity_follows_the_shard_files(tmp_path, photo_paths):
    folder = tmp_path / "s"
    write_shard(folder / "a.tar", plain_samples(photo_paths, "0", 2))
    before = webdataset_source(str(folder)).fingerprint
    assert webdataset_source(str(folder)).fingerprint == before
    shutil.copy(folder / "a.tar", folder / "b.tar")
    assert webdataset_source(str(folder)).fingerprint != before


def test_gzipped_shards_and_other_columns(tmp_path, photo_paths):
    samples = plain_samples(photo_paths, "0", 2)
    samples[0]["cls"] = "3"
    samples[0]["npy"] = b"\x93NUMPY raw bytes"
    write_shard(tmp_path / "s.tar", samples)
    import gzip

    (tmp_path / "s.tar.gz").write_bytes(gzip.compress((tmp_path / "s.tar").read_bytes()))
    (tmp_path / "s.tar").unlink()
    got = rows(webdataset_source(str(tmp_path / "s.tar.gz")))
    assert got[0]["cls"] == "3" and got[0]["npy"] == b"\x93NUMPY raw bytes"
    assert got[1]["cls"] is None and got[1]["npy"] is None


def test_resolve_source_knows_shards(tmp_path, shards, image_folder):
    from curate.sources import resolve_source

    folder = tmp_path / "shards"
    for given in (folder / "{00000..00002}.tar", folder / "*.tar", folder, shards[0]):
        source = resolve_source(str(given))
        assert source.kind == "webdataset", given
    assert len(resolve_source(str(folder)).shards) == 3
    picked = resolve_source(str(shards[1]), image_member="png")
    assert rows(picked)[1]["image"]["path"] == "10001.png"
    # A folder with images is an image folder, whatever else it holds.
    shutil.copy(shards[0], image_folder / "stray.tar")
    assert resolve_source(str(image_folder)).kind == "folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no Parquet files and no tar shards"):
        resolve_source(str(empty))
