"""`resolve_source`: which kind a SOURCE is, and one-line errors, at once, for what is not
there (a mistyped folder never waits on the Hub)."""

from __future__ import annotations

import os
import time

import pytest

from curate.sources import SourceError, resolve_source


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        resolve_source(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(SourceError, match="no images found"):
        resolve_source(tmp_path / "empty")
    with pytest.raises(SourceError, match="--limit must be at least 1"):
        resolve_source(tmp_path / "empty", limit=0)


@pytest.mark.timeout(60)
def test_a_mistyped_folder_fails_at_once(tmp_path, monkeypatch):
    """`curate score ./imagez` used to ask the Hub (five retries, ~40 s) before failing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    # Online as far as curate can tell: only the name decides.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    for typo in ("./imagez", "imagez", "images/cats", os.path.join(tmp_path, "imagez")):
        started = time.monotonic()
        with pytest.raises(SourceError) as err:
            resolve_source(typo)
        assert time.monotonic() - started < 2, typo
        assert str(err.value).startswith(f"{typo} does not exist"), str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(SourceError, match=r"^./imagez does not exist \(did you mean ./images\?\)$"):
        resolve_source("./imagez")


def test_a_hub_name_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(
        SourceError, match="does not exist here, and the Hugging Face Hub is offline"
    ):
        resolve_source("someone/some-dataset", split="train")
    assert time.monotonic() - started < 2


@pytest.mark.timeout(60)
def test_a_source_that_is_no_file_or_folder(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(SourceError, match=r"pipe.png is a named pipe \(FIFO\), not an image file"):
        resolve_source(tmp_path / "pipe.png")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(SourceError, match="gone.jpg is a symbolic link that leads nowhere"):
        resolve_source(tmp_path / "gone.jpg")
