"""curate.detectors.hf: loading through the Hub path, labels by name, devices, dtypes, clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from curate.detectors import (
    ModelLoadError,
    PreprocessConfig,
    load_detector,
    resolve_device,
    resolve_dtype,
)


def test_loads_a_local_checkpoint(tiny_checkpoint):
    det = load_detector(tiny_checkpoint, device="cpu", dtype="float32")
    assert (det.fake_index, det.real_index) == (0, 1)
    assert det.device == torch.device("cpu") and det.dtype == torch.float32
    assert det.preprocess == PreprocessConfig(
        height=64, width=64, resample=2, processor="SiglipImageProcessorPil"
    )
    assert det.model.config._attn_implementation == "sdpa"
    assert not det.model.training


def test_swapped_labels_are_read_by_name(swapped_checkpoint):
    det = load_detector(swapped_checkpoint, device="cpu")
    assert (det.fake_index, det.real_index) == (1, 0)
    assert (det.fake_indices, det.real_indices) == ((1,), (0,))


def test_labels_are_read_from_config_json_and_required(tiny_checkpoint, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["id2label"] = {"0": "human", "1": "AI-generated"}
    (ckpt / "config.json").write_text(json.dumps(config))
    det = load_detector(str(ckpt), device="cpu")
    assert (det.fake_indices, det.real_indices) == ((1,), (0,))
    config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1"}
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="'LABEL_0', 'LABEL_1' match neither"):
        load_detector(str(ckpt), device="cpu")
    det = load_detector(str(ckpt), device="cpu", synthetic_labels=["LABEL_1"])
    assert (det.fake_indices, det.real_indices) == ((1,), (0,))


def test_offline_hub_miss_is_one_clear_sentence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_detector("someone/not-cached-detector", device="cpu")
    msg = str(info.value)
    assert "someone/not-cached-detector" in msg and "CURATE_MODEL" in msg and "\n" not in msg
    assert info.value.__cause__ is None  # `from None`: no chained traceback for users


def test_missing_local_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_detector(str(tmp_path / "nope" / "model"), device="cpu")


def test_pickle_weights_are_refused(tiny_checkpoint, tmp_path):
    """safetensors only: a checkpoint that ships only pickled weights is not loaded."""
    from safetensors.torch import load_file

    ckpt = tmp_path / "bin_only"
    ckpt.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(f"{tiny_checkpoint}/{name}", ckpt)
    torch.save(load_file(f"{tiny_checkpoint}/model.safetensors"), ckpt / "pytorch_model.bin")
    with pytest.raises(ModelLoadError):
        load_detector(str(ckpt), device="cpu")


def test_devices_and_dtypes():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:1")
    with pytest.raises(ValueError, match="Unknown device"):
        resolve_device("tpu-please")
    cpu = torch.device("cpu")
    # The CPU default depends on the CPU (bfloat16 where it is native): the lead's tests pin it.
    assert resolve_dtype(None, cpu) in (torch.float32, torch.bfloat16)
    assert resolve_dtype("auto", cpu) == resolve_dtype(None, cpu)
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype(torch.float16, cpu) == torch.float16
    with pytest.raises(ValueError, match="Unknown dtype"):
        resolve_dtype("int4", cpu)


def test_preprocess_config_from_processor_json():
    cfg = PreprocessConfig.from_dict(
        {
            "image_processor_type": "SiglipImageProcessor",
            "size": {"height": 512, "width": 512},
            "resample": 2,
            "image_mean": [0.5] * 3,
        }
    )
    assert (cfg.height, cfg.width, cfg.resample) == (512, 512, 2)
    with pytest.raises(ModelLoadError, match="its own input size"):
        PreprocessConfig.from_dict(
            {"image_processor_type": "SiglipImageProcessor", "size": {"shortest_edge": 224}}
        )


def test_attention_free_architectures_load(tmp_path):
    """ConvNeXt has no attention: it loads without the SDPA request it would refuse."""
    from curate.testing import build_random_classifier

    det = load_detector(build_random_classifier(tmp_path / "cnx", "convnext"), device="cpu")
    assert det.preprocess.shortest_edge == 256 and det.preprocess.crops == ((224, 224),)
