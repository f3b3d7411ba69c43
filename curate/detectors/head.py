"""Adapted heads: a linear Fake/Real classifier fitted on a detector's own image embeddings.

The embedding is what the checkpoint's classification layer reads (`model.classifier`'s
input: SigLIP's mean-pooled tokens, ViT's CLS token, ConvNeXt's pooled features...), taken
with a forward hook so it works across families. `fit_head` fits an L2, class-balanced
logistic regression on it, the strength chosen by stratified cross-validation; `attach_head`
puts the fitted layer in place of the checkpoint's classifier, so the adapted detector is a
plain `Detector` (logits `[Fake, Real]`, with `fake_logit - real_logit = w.x + b`).

A head is saved as a small folder: `head.safetensors` (`weight` [2, dim], `bias` [2]) and
`head.json` (the backbone it belongs to: model, revision and the SHA-256 of its weights;
labels; embedding dimension; how it was fitted and what it scored on held-out data). It is
refused on any other backbone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from curate.detectors.base import Detector, ModelLoadError

HEAD_CONFIG = "head.json"
HEAD_WEIGHTS = "head.safetensors"
HEAD_FORMAT = "curate-head/1"
HEAD_LABELS = ("Fake", "Real")  # row 0 says synthetic, row 1 real
# Inverse regularisation strengths tried by cross-validation (on standardised embeddings).
C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 13))
MAX_FOLDS = 5


class HeadMismatchError(ValueError):
    """A head used with a backbone it was not fitted on (or a folder that is not a head)."""


@dataclass(frozen=True)
class LinearHead:
    """A fitted head: `gap = weight[0].x + bias[0] - (weight[1].x + bias[1])` on an embedding x.

    `backbone`, `revision` and `weights_sha256` name the detector it was fitted on; `info`
    holds how it was fitted (C, folds, class counts) and its held-out figures."""

    weight: np.ndarray  # [2, embedding_dim] float32, rows in HEAD_LABELS order
    bias: np.ndarray  # [2] float32
    backbone: str
    revision: str | None = None
    weights_sha256: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def embedding_dim(self) -> int:
        return int(self.weight.shape[1])

    def gap(self, embeddings: np.ndarray) -> np.ndarray:
        """The head's logit gap (float64) for each row of `embeddings` [N, dim]."""
        x = np.asarray(embeddings, dtype=np.float64)
        w = self.weight.astype(np.float64)
        b = self.bias.astype(np.float64)
        return x @ (w[0] - w[1]) + (b[0] - b[1])

    def config(self) -> dict[str, Any]:
        return {
            "format": HEAD_FORMAT,
            "backbone": {
                "model": self.backbone,
                "revision": self.revision,
                "weights_sha256": self.weights_sha256,
            },
            "labels": list(HEAD_LABELS),
            "embedding_dim": self.embedding_dim,
            **dict(self.info),
        }

    def save(self, folder: str | os.PathLike, *, overwrite: bool = False) -> str:
        """Write the head folder; it appears only when complete (written beside, renamed)."""
        from safetensors.numpy import save_file

        from curate.io.atomic import atomic_write_text

        folder = os.fspath(folder).rstrip("/\\") or "."
        if os.path.exists(folder) and not overwrite:
            raise FileExistsError(f"{folder} already exists (pass --overwrite to replace it)")
        tmp = f"{folder}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        try:
            tensors = {
                "weight": np.ascontiguousarray(self.weight, dtype=np.float32),
                "bias": np.ascontiguousarray(self.bias, dtype=np.float32),
            }
            save_file(tensors, os.path.join(tmp, HEAD_WEIGHTS), metadata={"format": HEAD_FORMAT})
            text = json.dumps(self.config(), indent=2, sort_keys=False, default=_json_default)
            atomic_write_text(os.path.join(tmp, HEAD_CONFIG), text + "\n")
            old = f"{folder}.{os.getpid()}.old"
            if os.path.exists(folder):
                os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> LinearHead:
        """Read a head folder written by `save`; a HeadMismatchError says what is wrong."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = os.fspath(folder)
        config_path = os.path.join(folder, HEAD_CONFIG)
        if not os.path.isfile(config_path):
            raise HeadMismatchError(
                f"{folder} is not an adapted head (no {HEAD_CONFIG}); make one with `curate adapt`"
            )
        try:
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
            tensors = load_file(os.path.join(folder, HEAD_WEIGHTS))
        except (OSError, ValueError, SafetensorError) as exc:
            raise HeadMismatchError(f"cannot read the head in {folder}: {exc}") from None
        if config.get("format") != HEAD_FORMAT or list(config.get("labels", ())) != list(
            HEAD_LABELS
        ):
            raise HeadMismatchError(
                f"{folder} holds a head of format {config.get('format')!r} with labels "
                f"{config.get('labels')}; this curate reads {HEAD_FORMAT} with {list(HEAD_LABELS)}"
            )
        weight, bias = tensors.get("weight"), tensors.get("bias")
        dim = config.get("embedding_dim")
        if weight is None or bias is None or weight.shape != (2, dim) or bias.shape != (2,):
            raise HeadMismatchError(
                f"the weights in {folder} do not match its {HEAD_CONFIG} (embedding_dim {dim})"
            )
        backbone = config.get("backbone") or {}
        info = {
            k: v
            for k, v in config.items()
            if k not in ("format", "backbone", "labels", "embedding_dim")
        }
        return cls(
            weight=weight,
            bias=bias,
            backbone=str(backbone.get("model")),
            revision=backbone.get("revision"),
            weights_sha256=backbone.get("weights_sha256"),
            info=info,
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def head_digest(folder: str | os.PathLike) -> str:
    """SHA-256 of a head's weights file: what identifies the head in scoring metadata."""
    return _sha256_of(os.path.join(os.fspath(folder), HEAD_WEIGHTS))


# -- the backbone a head belongs to ------------------------------------------------------------
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIGESTS: dict[tuple, str] = {}


def _sha256_of(path: str) -> str:
    real = os.path.realpath(path)
    # The Hugging Face cache names each large-file blob by its SHA-256: no need to read it.
    if _HEX64.fullmatch(os.path.basename(real)):
        return os.path.basename(real)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def backbone_weights_sha256(model: str, revision: str | None = None) -> str | None:
    """SHA-256 of a checkpoint's safetensors weights (of its shards' digests, when sharded),
    or None where they cannot be found here. Reads local files only."""
    from transformers.utils import cached_file

    def find(name: str) -> str | None:
        try:
            return cached_file(
                model,
                name,
                revision=revision,
                local_files_only=True,
                _raise_exceptions_for_missing_entries=False,
            )
        except OSError:
            return None

    single = find("model.safetensors")
    if single is not None:
        return _sha256_of(single)
    index = find("model.safetensors.index.json")
    if index is None:
        return None
    with open(index, encoding="utf-8") as f:
        shards = sorted(set(json.load(f).get("weight_map", {}).values()))
    paths = [find(s) for s in shards]
    if not shards or any(p is None for p in paths):
        return None
    return hashlib.sha256("".join(_sha256_of(p) for p in paths).encode()).hexdigest()


def model_identity(model: str) -> str:
    """How a head names its backbone: a local folder by its absolute path, a Hub id as is."""
    return os.path.abspath(model) if os.path.isdir(model) else model


def check_head_fits(head: LinearHead, model: str, revision: str | None = None) -> None:
    """Raise HeadMismatchError unless `head` was fitted on `model`'s weights. Compared by the
    weights' SHA-256 where both are known (a moved folder still fits), else by name."""
    digest = backbone_weights_sha256(model, revision)
    if head.weights_sha256 and digest:
        same = head.weights_sha256 == digest
    else:
        same = (head.backbone, head.revision) == (model_identity(model), revision)
    if not same:
        raise HeadMismatchError(
            f"this head was fitted on {head.backbone}"
            f"{f' (revision {head.revision})' if head.revision else ''}, not on {model}"
            f"{f' (revision {revision})' if revision else ''}: a head only fits the detector it "
            f"was fitted on; fit one for {model} with `curate adapt --model {model}`"
        )


# -- embeddings: the input of the classification layer -----------------------------------------
def _classifier_slot(model: torch.nn.Module) -> tuple[torch.nn.Module, str, torch.nn.Linear]:
    """(parent, attribute, layer) of the linear layer that makes a classifier's logits."""
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper
    layer = getattr(model, "classifier", None)
    parent, key = model, "classifier"
    if isinstance(layer, torch.nn.Sequential) and len(layer):  # ResNet: Flatten, Linear
        parent, key, layer = layer, str(len(layer) - 1), layer[-1]
    if not isinstance(layer, torch.nn.Linear):
        raise ModelLoadError(
            f"cannot find the classification layer of {type(model).__name__} (a linear "
            "`classifier`), so its embeddings cannot be read for an adapted head"
        )
    return parent, key, layer


def embedding_dim(model: torch.nn.Module) -> int:
    """Width of the embedding a classifier's last layer reads."""
    return int(_classifier_slot(model)[2].in_features)


@contextmanager
def captured_embeddings(model: torch.nn.Module) -> Iterator[list[np.ndarray]]:
    """Collect what the classification layer reads on every forward pass inside the block:
    a list that gains one float32 [batch, dim] array per pass, in the order they ran."""
    layer = _classifier_slot(model)[2]
    got: list[np.ndarray] = []

    def hook(module: torch.nn.Module, args: tuple) -> None:
        got.append(args[0].detach().float().cpu().numpy())

    handle = layer.register_forward_pre_hook(hook)
    try:
        yield got
    finally:
        handle.remove()


def attach_head(detector: Detector, head: LinearHead) -> Detector:
    """`detector` with `head` in place of its classification layer (the model is changed in
    place): a two-class Fake/Real detector whose logits come from the head."""
    parent, key, layer = _classifier_slot(detector.model)
    if layer.in_features != head.embedding_dim:
        raise HeadMismatchError(
            f"the head reads {head.embedding_dim}-wide embeddings but this model's classifier "
            f"reads {layer.in_features}: it was fitted on another backbone"
        )
    new = torch.nn.Linear(layer.in_features, len(HEAD_LABELS))
    with torch.no_grad():
        new.weight.copy_(torch.from_numpy(np.asarray(head.weight, dtype=np.float32)))
        new.bias.copy_(torch.from_numpy(np.asarray(head.bias, dtype=np.float32)))
    new.to(device=layer.weight.device, dtype=layer.weight.dtype).eval()
    setattr(parent, key, new)
    config = getattr(detector.model, "config", None)
    if config is not None:  # what the model now says about its classes
        config.id2label = dict(enumerate(HEAD_LABELS))
        config.label2id = {name: i for i, name in enumerate(HEAD_LABELS)}
    return dataclasses.replace(detector, fake_indices=(0,), real_indices=(1,))


# -- fitting ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeadFit:
    """A fitted logistic regression on raw embeddings: `gap = coef.x + intercept`."""

    coef: np.ndarray  # [dim] float64
    intercept: float
    C: float
    folds: int
    cv_log_loss: float  # mean held-out fold log loss (class-balanced) at C

    def as_head(
        self, backbone: str, revision: str | None, weights_sha256: str | None, **info: Any
    ) -> LinearHead:
        """This fit as a `LinearHead` of the backbone it was fitted on; `info` is recorded."""
        weight = np.stack([self.coef, np.zeros_like(self.coef)]).astype(np.float32)
        bias = np.array([self.intercept, 0.0], dtype=np.float32)
        fit = {"C": self.C, "cv_folds": self.folds, "cv_log_loss": self.cv_log_loss}
        return LinearHead(
            weight, bias, model_identity(backbone), revision, weights_sha256, {"fit": fit, **info}
        )


def fit_head(embeddings: np.ndarray, y: np.ndarray, seed: int = 0) -> HeadFit:
    """Fit an L2, class-balanced logistic regression (1 = Fake) on `embeddings` [N, dim].

    Embeddings are standardised, so one C fits every backbone's scale; C is picked from
    `C_GRID` by the class-balanced log loss of stratified K-fold cross-validation (K = 5, or
    the size of the smaller class when that is below 5), then refitted on all rows. The
    standardisation is folded into the returned weights."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold
    from sklearn.utils.class_weight import compute_sample_weight

    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    smaller = int(min((y == 1).sum(), (y == 0).sum()))
    if smaller < 2:
        raise ValueError(
            f"fitting a head needs at least 2 labelled images of each class; got "
            f"{int((y == 1).sum())} Fake and {int((y == 0).sum())} Real"
        )
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-12] = 1.0
    z = (x - mean) / std
    folds = min(MAX_FOLDS, smaller)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(z, y))

    def model(c: float, warm_start: bool = False) -> Any:
        return LogisticRegression(
            C=c, class_weight="balanced", max_iter=5000, warm_start=warm_start
        )

    losses = np.zeros(len(C_GRID))
    for train, test in splits:
        # Along the grid, each fit starts from the last one's solution (as a regularisation
        # path does): the same optimum, reached in a fraction of the iterations.
        path = model(C_GRID[0], warm_start=True)
        weights = compute_sample_weight("balanced", y[test])
        for i, c in enumerate(C_GRID):
            p = path.set_params(C=c).fit(z[train], y[train]).predict_proba(z[test])[:, 1]
            losses[i] += log_loss(y[test], p, sample_weight=weights, labels=[0, 1]) / folds
    best = int(np.argmin(losses))
    final = model(C_GRID[best]).fit(z, y)
    coef = final.coef_[0] / std
    intercept = float(final.intercept_[0] - (final.coef_[0] * mean / std).sum())
    return HeadFit(coef, intercept, C_GRID[best], folds, float(losses[best]))
