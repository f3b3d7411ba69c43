"""The model check behind the App's scoring form, in the App's words.

The form's Model field takes a Hugging Face Hub id or a checkpoint folder on the machine that
runs FiftyOne. `model_problem` says what is wrong with one before anything runs: reading its
configs and labels as the scorer will (no weights are loaded), and, for a folder, that it holds a
weights file. Messages name the form's fields, not the command line's options, and a folder gets
no Hub link.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence

CONFIG_FILES = ("config.json", "preprocessor_config.json")
# What `from_pretrained` loads weights from (single files, then sharded indexes).
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
EXAMPLE_HUB_ID = "prithivMLmods/open-deepfake-detection"
EMPTY_MODEL = (
    "Enter a model: a Hugging Face Hub id such as "
    f"{EXAMPLE_HUB_ID}, or a checkpoint folder on the server"
)
_HUB_LINK = re.compile(r"\s*Check ?out '?https?://huggingface\.co/[^\s']*'? for available files\.?")


def _stamp(model: str) -> tuple | None:
    """For a local folder, when and how big its config files are: a folder that changes is
    checked again. None for a Hub id (its cached snapshot does not change under a revision)."""
    if not os.path.isdir(model):
        return None
    stamp = []
    for name in CONFIG_FILES:
        try:
            st = os.stat(os.path.join(model, name))
            stamp.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            stamp.append((name, None, None))
    return tuple(stamp)


@functools.lru_cache(maxsize=64)
def _check_model(
    model: str, revision: str | None, synthetic_labels: tuple[str, ...] | None, stamp: tuple | None
) -> None:
    # Cached because App forms call it on every change. lru_cache keeps results, not
    # exceptions: a failed check runs again next time (the model may have been downloaded
    # since), and `stamp` makes a passed check of a local folder run again once it changes.
    from transformers.utils import cached_file

    from curate.detectors import label_indices, load_preprocess_config, model_load_error

    load_preprocess_config(model, revision)
    try:
        config_path = cached_file(model, "config.json", revision=revision)
    except OSError as exc:
        raise model_load_error(model, exc) from None
    with open(config_path, encoding="utf-8") as f:
        label_indices(json.load(f).get("id2label") or {}, synthetic_labels)


def _looks_like_a_path(model: str) -> bool:
    """A Hub id is `name` or `owner/name`; anything else with a slash, or starting with `/`,
    `.` or `~`, can only be a folder."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


def _folder_problem(folder: str) -> str | None:
    missing = [f for f in CONFIG_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        return (
            f"The folder {folder} is not a model checkpoint: it has no {' and no '.join(missing)} "
            "(a checkpoint saved with save_pretrained has config.json, "
            "preprocessor_config.json and its weights)"
        )
    if not any(os.path.isfile(os.path.join(folder, w)) for w in WEIGHT_FILES):
        return (
            f"The folder {folder} has a model's configs but no weights "
            f"({' or '.join(WEIGHT_FILES[:2])}); copy the whole checkpoint into it"
        )
    return None


def in_app_terms(model: str, message: str) -> str:
    """A model error as the scoring form says it: no command-line options, no Hub link for a
    folder, the form's fields named."""
    from curate.detectors.labels import FIX_HINT

    if "not in the local Hugging Face cache" in message:
        return (
            f"{model} is not a folder on the server, and as a Hugging Face Hub id it is not in "
            "the server's Hugging Face cache and the Hub cannot be reached from it: download it "
            f"on the server (hf download {model}) or enter the folder of a local copy"
        )
    message = _HUB_LINK.sub("", message).replace(
        "synthetic_labels names", "'Synthetic labels' names"
    )
    message = message.replace(
        FIX_HINT,
        "name the synthetic classes in 'Synthetic labels' (comma-separated); every other class "
        "then counts as real",
    )
    return message.strip().rstrip(".")


def model_problem(
    model: str | None,
    revision: str | None = None,
    synthetic_labels: Sequence[str] | str | None = None,
) -> str | None:
    """Why `model` cannot be loaded as a Fake/Real detector, in the App's words, or None.

    Reads configs and labels only (a folder must also hold a weights file); a model that passes
    can still fail to load (corrupt weights, out of memory), which the run reports before it
    scores anything."""
    from curate.detectors import ModelLoadError
    from curate.detectors.labels import parse_synthetic_labels

    if model is None or not model.strip():
        return EMPTY_MODEL
    model = model.strip()
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        problem = _folder_problem(path)
        if problem:
            return problem
        model = path
    elif os.path.lexists(path) and _looks_like_a_path(model):
        return f"{model} is a file; Model takes a checkpoint folder or a Hugging Face Hub id"
    elif _looks_like_a_path(model):
        return (
            f"There is no folder {model} on the server (the machine that runs FiftyOne); enter "
            "a checkpoint folder there, or a Hugging Face Hub id (owner/name)"
        )
    try:
        labels = parse_synthetic_labels(synthetic_labels)
        _check_model(model, revision, labels, _stamp(model))
    except ModelLoadError as exc:
        return in_app_terms(model, str(exc))
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return in_app_terms(model, f"Could not load model {model!r}: {first}")
    return None
