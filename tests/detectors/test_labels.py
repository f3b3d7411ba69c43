"""curate.detectors.labels: which classes mean synthetic, by name, or the override; never a guess."""

from __future__ import annotations

import pytest

from curate.detectors import ModelLoadError, label_indices
from curate.detectors.labels import REAL_NAMES, SYNTHETIC_NAMES, side_of


@pytest.mark.parametrize(
    ("id2label", "fake", "real"),
    [
        ({0: "Fake", 1: "Real"}, (0,), (1,)),
        ({0: "REAL", 1: "FAKE"}, (1,), (0,)),
        ({0: "artificial", 1: "human"}, (0,), (1,)),  # umm-maybe/AI-image-detector
        ({0: "AI-generated", 1: "human"}, (0,), (1,)),
        ({0: "ai", 1: "hum"}, (0,), (1,)),  # Ateeqq/ai-vs-human-image-detector
        ({0: "Realism", 1: "Deepfake"}, (1,), (0,)),  # prithivMLmods/Deep-Fake-Detector-v2
        ({0: "Artificial", 1: "Deepfake", 2: "Real"}, (0, 1), (2,)),
        ({"0": "ai_generated", "1": "nature"}, (0,), (1,)),  # string keys, as config.json has
        ({0: "Real Images", 1: "AI Generated Images"}, (1,), (0,)),  # filler words, spaces
        ({0: "fakes", 1: "reals"}, (0,), (1,)),  # plurals
        ({0: "synthetic", 1: "authentic"}, (0,), (1,)),
        ({0: "not_ai", 1: "AIGenerated"}, (1,), (0,)),
    ],
)
def test_synonyms(id2label, fake, real):
    assert label_indices(id2label) == (fake, real)


def test_tables_are_disjoint_and_self_consistent():
    assert all(side_of(n) == "synthetic" for n in SYNTHETIC_NAMES)
    assert all(side_of(n) == "real" for n in REAL_NAMES)
    assert side_of("Fake_Image") == "synthetic" and side_of("HUMAN") == "real"


def test_unknown_label_is_an_error_naming_the_labels_and_the_fix():
    with pytest.raises(ModelLoadError) as info:
        label_indices({0: "LABEL_0", 1: "LABEL_1"})  # transformers' default names
    msg = str(info.value)
    assert "'LABEL_0', 'LABEL_1' match neither" in msg and "\n" not in msg
    assert "synthetic_labels=" in msg and "--synthetic-labels" in msg


def test_a_generator_name_is_not_guessed():
    with pytest.raises(ModelLoadError, match="'stable_diffusion_xl', 'midjourney' match neither"):
        label_indices({0: "real", 1: "stable_diffusion_xl", 2: "midjourney"})


def test_ambiguous_label_is_an_error():
    with pytest.raises(ModelLoadError, match="'real_or_fake'.*names both"):
        label_indices({0: "real_or_fake", 1: "real"})


@pytest.mark.parametrize(
    ("id2label", "missing"),
    [({0: "fake", 1: "deepfake"}, "real"), ({0: "real", 1: "human"}, "synthetic")],
)
def test_a_side_without_a_class_is_an_error(id2label, missing):
    with pytest.raises(ModelLoadError, match=f"leave no {missing} class"):
        label_indices(id2label)


def test_one_class_is_an_error():
    with pytest.raises(ModelLoadError, match="at least a synthetic and a real class"):
        label_indices({0: "fake"})


def test_override_names_the_synthetic_classes():
    id2label = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert label_indices(id2label, ["label_2"]) == ((2,), (0, 1))
    assert label_indices(id2label, "LABEL_0, LABEL_2") == ((0, 2), (1,))  # the CLI's spelling
    # The override wins over the synonym table: here "Real" is declared synthetic.
    assert label_indices({0: "Fake", 1: "Real"}, ["Real"]) == ((1,), (0,))


def test_override_errors():
    id2label = {0: "sd", 1: "camera"}
    with pytest.raises(
        ModelLoadError, match="'dalle', which is not one of the checkpoint's labels"
    ):
        label_indices(id2label, ["sd", "dalle"])
    with pytest.raises(ModelLoadError, match="leave no real class"):
        label_indices(id2label, ["sd", "camera"])
    with pytest.raises(ModelLoadError, match="names no class"):
        label_indices(id2label, " , ")
