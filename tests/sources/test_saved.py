"""A `save_to_disk` folder as a source: splits, features kept, images left undecoded."""

from __future__ import annotations

from pathlib import Path

import pytest
from source_rows import rows

from curate.sources import SourceError, resolve_source


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
    got = rows(source)
    assert got[0]["label"] == 1
    assert got[1]["image"]["bytes"] == Path(photo_paths[1]).read_bytes()  # undecoded
    dd["train"].save_to_disk(tmp_path / "one")
    assert resolve_source(tmp_path / "one").num_rows == 5
