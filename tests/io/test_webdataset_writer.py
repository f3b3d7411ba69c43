"""Tar shards: samples read member by member as `webdataset` groups them, damage reported as
samples with reasons, and shards written back with every member byte-identical."""

from __future__ import annotations

import gzip
import tarfile

import pytest
import webdataset as wds
from wds_shards import cut_in_member, encoded, mixed_shards, plain_samples, write_shard

from curate.io.webdataset import (
    TarShardWriter,
    read_samples,
    sample_extensions,
    shard_stem,
    split_member_name,
    split_shard,
)


def _library_samples(path) -> list[dict]:
    """The shard as the `webdataset` library reads it (raw bytes, no decoding)."""
    return list(wds.WebDataset(str(path), shardshuffle=False))


def _content(sample: dict) -> dict:
    """A library sample without the fields that name the file it came from."""
    return {k: v for k, v in sample.items() if k not in ("__url__", "__local_path__")}


def _members(path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]


def test_keys_and_extensions_as_webdataset_splits_them():
    assert split_member_name("000123.jpg") == ("000123", "jpg")
    assert split_member_name("dir/000123.seg.PNG") == ("dir/000123", "seg.png")
    assert split_member_name("a.b/c.json") == ("a.b/c", "json")
    assert split_member_name("README") == (None, None)
    assert shard_stem("00012.tar") == "00012" and shard_stem("x/00012.tar.gz") == "x/00012"


def test_samples_match_what_the_webdataset_library_reads(tmp_path, photo_paths):
    shards = mixed_shards(tmp_path, photo_paths)
    for shard in shards[:2]:  # the whole ones
        ours = list(read_samples(shard))
        theirs = _library_samples(shard)
        assert [s.key for s in ours] == [s["__key__"] for s in theirs]
        for mine, lib in zip(ours, theirs, strict=True):
            assert mine.error is None
            assert mine.by_extension() == {k: v for k, v in lib.items() if not k.startswith("__")}
    assert [k for k, _ in sample_extensions(shards[1])] == [f"1{i:04d}" for i in range(5)]
    assert dict(sample_extensions(shards[1]))["10001"] == ["jpg", "json", "png", "txt"]


def test_a_truncated_shard_gives_its_whole_samples_then_one_with_the_reason(tmp_path, photo_paths):
    shard = mixed_shards(tmp_path, photo_paths)[2]
    samples = list(read_samples(shard))
    assert [s.key for s in samples] == ["20000", "20001", "20002"]
    assert [s.error for s in samples[:2]] == [None, None]
    assert (
        "truncated" in samples[2].error and "sample 3 of the shard is cut short" in samples[2].error
    )
    assert [i.name for i, _ in samples[2].members] == []  # 20002.jpg was the member cut


@pytest.mark.parametrize("damage", ["between_members", "half_a_header", "garbage", "empty", "gz"])
def test_every_kind_of_damage_is_a_reason_never_an_exception(tmp_path, photo_paths, damage):
    shard = write_shard(tmp_path / "s.tar", plain_samples(photo_paths, "0", 3))
    with tarfile.open(shard) as tar:
        third = tar.getmember("00002.jpg")
    data = shard.read_bytes()
    # Where the pax header of member 00002.jpg starts: its own header block comes just before
    # its data; the pax block pair before that.
    boundary = third.offset
    if damage == "between_members":
        shard.write_bytes(data[:boundary])
    elif damage == "half_a_header":
        shard.write_bytes(data[: boundary + 100])
    elif damage == "garbage":
        shard.write_bytes(data[:boundary] + b"\x07" * 2048)
    elif damage == "empty":
        shard.write_bytes(b"")
    else:
        shard = tmp_path / "s.tar.gz"
        packed = gzip.compress(data)
        shard.write_bytes(packed[: len(packed) * 2 // 3])
    samples = list(read_samples(shard))
    assert samples[-1].error, [(s.key, s.error) for s in samples]
    assert all(s.error is None for s in samples[:-1])
    if damage in ("between_members", "half_a_header", "garbage"):
        assert [s.key for s in samples[:2]] == ["00000", "00001"]


def test_a_complete_gzipped_shard_reads_like_the_plain_one(tmp_path, photo_paths):
    shard = write_shard(tmp_path / "s.tar", plain_samples(photo_paths, "0", 3))
    packed = tmp_path / "s.tar.gz"
    packed.write_bytes(gzip.compress(shard.read_bytes()))
    plain = [(s.key, s.by_extension(), s.error) for s in read_samples(shard)]
    assert [(s.key, s.by_extension(), s.error) for s in read_samples(packed)] == plain


def test_split_shard_copies_members_byte_identical(tmp_path, photo_paths):
    shard = mixed_shards(tmp_path / "in", photo_paths)[1]
    keys = [s.key for s in read_samples(shard)]
    outcomes = ["keep", "remove", "keep", "review", "keep"]
    targets = {"keep": tmp_path / "kept.tar", "remove": tmp_path / "removed.tar.gz"}
    counts = split_shard(shard, zip(keys, outcomes, strict=True), targets)
    assert counts == {"keep": 3, "remove": 1, "review": 1}
    original = {s["__key__"]: s for s in _library_samples(shard)}
    kept = _library_samples(targets["keep"])
    assert [s["__key__"] for s in kept] == ["10000", "10002", "10004"]
    for sample in kept:
        assert _content(sample) == _content(original[sample["__key__"]])
    removed = _library_samples(targets["remove"])
    assert [s["__key__"] for s in removed] == ["10001"]
    assert removed[0]["png"] == original["10001"]["png"]
    # Names, order and bytes of the members, as tarfile sees them.
    in_order = [m for m in _members(shard) if m[0].split(".")[0] in ("10000", "10002", "10004")]
    assert _members(targets["keep"]) == in_order


def test_split_shard_refuses_rows_of_another_shard_and_writes_nothing(tmp_path, photo_paths):
    shard = write_shard(tmp_path / "s.tar", plain_samples(photo_paths, "0", 3))
    wrong = [("00000", "keep"), ("99999", "keep"), ("00002", "keep")]
    with pytest.raises(ValueError, match="sample 1 is '00001'"):
        split_shard(shard, wrong, {"keep": tmp_path / "kept.tar"})
    with pytest.raises(ValueError, match="more samples"):
        split_shard(shard, [(k, "keep") for k in ("00000", "00001", "00002", "x")], {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tar"]


def test_split_shard_of_a_truncated_shard_copies_the_whole_members(tmp_path, photo_paths):
    shard = write_shard(tmp_path / "s.tar", plain_samples(photo_paths, "0", 3))
    cut_in_member(shard, "00002.json")
    decisions = [(s.key, "keep") for s in read_samples(shard)]
    assert split_shard(shard, decisions, {"keep": tmp_path / "kept.tar"}) == {"keep": 3}
    kept = _library_samples(tmp_path / "kept.tar")
    assert [sorted(k for k in s if not k.startswith("__")) for s in kept] == [
        ["jpg", "json", "txt"],
        ["jpg", "json", "txt"],
        ["jpg"],
    ]


def test_writer_is_atomic_and_refuses_to_overwrite(tmp_path, photo_paths):
    shard = write_shard(tmp_path / "s.tar", plain_samples(photo_paths, "0", 2))
    sample = next(read_samples(shard))
    out = tmp_path / "out.tar"
    with pytest.raises(RuntimeError), TarShardWriter(out) as writer:
        writer.write(sample)
        raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tar"]
    with TarShardWriter(out) as writer:
        writer.write(sample)
    with pytest.raises(FileExistsError, match="overwrite"):
        TarShardWriter(out)
    assert _members(out) == _members(shard)[:3]


def test_members_with_long_names_and_subfolders_survive(tmp_path, photo_paths):
    key = "deep/" + "x" * 150 + "/000001"
    shard = write_shard(tmp_path / "s.tar", [{"__key__": key, "jpg": encoded(photo_paths[0])}])
    (sample,) = read_samples(shard)
    assert sample.key == key
    split_shard(shard, [(key, "keep")], {"keep": tmp_path / "kept.tar"})
    assert _members(tmp_path / "kept.tar") == _members(shard)
