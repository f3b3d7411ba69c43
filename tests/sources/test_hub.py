"""The Hub source (streamed) and the rule for when a SOURCE is worth asking the Hub about."""

from __future__ import annotations

import pytest
from source_rows import parquet_files, rows

from curate.sources.hub import hub_offline, hub_source, looks_like_hub_name


def test_streamed_dataset_path(tmp_path):
    """The Hub path (streaming `load_dataset`, skip/take for resuming), run on a local folder in
    the Hub's repository layout since the tests cannot reach the Hub."""
    (tmp_path / "repo" / "data").mkdir(parents=True)
    (path,) = parquet_files(tmp_path, rows_per_file=(5,))
    path.rename(tmp_path / "repo" / "data" / "train-00000-of-00001.parquet")
    source = hub_source(str(tmp_path / "repo"), split="train")
    assert (source.kind, source.image_column) == ("hub", "picture")
    assert [r["id"] for r in rows(source, 2, start=2)] == [2, 3, 4]
    assert rows(source)[0]["picture"]["bytes"] == (tmp_path / "blob.png").read_bytes()
    limited = hub_source(str(tmp_path / "repo"), split="train", limit=3)
    assert limited.num_rows == 3
    assert [r["id"] for r in rows(limited, 2, start=1)] == [1, 2]


def test_what_looks_like_a_hub_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("user/dataset", "Org-1/data.set_v2", "someone/cats"):
        assert looks_like_hub_name(name), name
    (tmp_path / "images").mkdir()
    for name in ("./imagez", "imagez", "/data/x", "~/x", "../x/y", "a/b/c", "user/cat.jpg",
                 "images/cats", "x.parquet"):  # fmt: skip
        assert not looks_like_hub_name(name), name


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_offline_flags(monkeypatch, var):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    assert not hub_offline()
    monkeypatch.setenv(var, "1")
    assert hub_offline()
