"""`score_dataset` across worker processes (`num_proc`, `num_gpus`) gives the single-process
scores; the spawn start method (the multi-GPU recipe) runs on CPU in CI."""

from __future__ import annotations

import multiprocess
import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image

from curate import DeepfakeScorer, score_dataset


@pytest.fixture(scope="module")
def dataset(photo_paths, broken_images, mode_images) -> Dataset:
    files = photo_paths + list(mode_images.values())[:3]
    files += [v for v in broken_images.values() if isinstance(v, str)][:3]
    ds = Dataset.from_dict({"image": [{"bytes": None, "path": p} for p in files]})
    return ds.cast(Features({"image": Image(decode=False)}))


@pytest.fixture(scope="module")
def single(dataset, tiny_checkpoint) -> Dataset:
    return score_dataset(dataset, DeepfakeScorer(tiny_checkpoint, device="cpu", batch_size=2))


def _assert_same(a: Dataset, b: Dataset) -> None:
    assert a.column_names == b.column_names
    assert a["deepfake_label"] == b["deepfake_label"]
    assert a["deepfake_error"] == b["deepfake_error"]
    pa, pb = (np.array(x["fake_prob"], dtype=float) for x in (a, b))  # None -> nan
    np.testing.assert_allclose(pa, pb, atol=1e-6)


@pytest.mark.parametrize("start_method", ["fork", None])  # None: spawn
def test_num_proc_equals_single_process(dataset, single, tiny_checkpoint, start_method):
    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", batch_size=2)
    before = multiprocess.get_start_method(allow_none=True)
    multi = score_dataset(dataset, scorer, num_proc=2, map_batch_size=4, start_method=start_method)
    assert multiprocess.get_start_method(allow_none=True) == before  # global setting restored
    _assert_same(multi, single)
    assert sum(e is not None for e in multi["deepfake_error"]) == 3  # broken rows kept


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU machine gives")
def test_num_gpus_without_gpus_is_a_clear_error(dataset, tiny_checkpoint):
    with pytest.raises(ValueError, match=r"num_gpus=2 but this machine has 0 CUDA GPU\(s\)"):
        score_dataset(dataset, DeepfakeScorer(tiny_checkpoint), num_gpus=2)


def test_num_gpus_argument_checks(dataset, tiny_checkpoint):
    with pytest.raises(ValueError, match="one process per GPU"):
        score_dataset(dataset, DeepfakeScorer(tiny_checkpoint), num_gpus=2, num_proc=3)
    with pytest.raises(ValueError, match="at least 1"):
        score_dataset(dataset, DeepfakeScorer(tiny_checkpoint), num_gpus=0)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_num_gpus_equals_single_process(dataset, tiny_checkpoint):
    n = torch.cuda.device_count()
    kw = dict(dtype="float32", batch_size=2)
    one = score_dataset(dataset, DeepfakeScorer(tiny_checkpoint, device="cuda", **kw))
    many = score_dataset(
        dataset, DeepfakeScorer(tiny_checkpoint, device="auto", **kw), num_gpus=n, map_batch_size=2
    )
    _assert_same(many, one)
