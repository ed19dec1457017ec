"""Is an input like what a model was trained on? A reference of each model's own features.

A classifier answers for every input, even a photograph; its softmax says nothing about
whether the input resembles its training data. Each model therefore carries a reference of
its *penultimate-layer features* (``module.embed``: the input of the last fully connected
layer) on its training split: the class means and one shared covariance (Ledoit-Wolf
shrinkage, scikit-learn), as in Lee et al. (NeurIPS 2018, "A simple unified framework for
detecting out-of-distribution samples and adversarial attacks"). The *OOD score* of an input
is its Mahalanobis distance to the nearest class mean (one mean for the multi-label findings
model); the *threshold* is the :data:`DEV_ACCEPT` quantile of the scores of the dev split, so
95% of in-distribution dev inputs are accepted. An input scoring above the threshold is
"unlike this model's training data", and its prediction is not shown as a result.

The reference is stored beside the weights (``<model id>.ood.pt``, float32 tensors read with
``torch.load(weights_only=True)`` after a sha256 check) and described in the card's ``ood``
entry (file, sha256, threshold, where it was fitted, and the measured detection figures).

Units: an X-ray (or a slice image) is scored once; a CT volume once by COVID3D; for the CT
slice model every axial slice is scored and the scan's score is the median over its slices
(a scan is judged by its typical slice; the share of flagged slices is reported too).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import WeightsIntegrityError

#: Share of in-distribution dev inputs the threshold accepts.
DEV_ACCEPT = 0.95
#: File name of a model's reference, beside its weights.
SUFFIX = ".ood.pt"
METHOD = "mahalanobis"
#: Inputs per forward pass when computing features.
FEATURE_BATCH = 32


@dataclass(frozen=True)
class OodReference:
    """Class means (K, D) and the shared precision matrix (D, D) of a model's training features,
    with the threshold on the distance (fitted on the dev split)."""

    means: np.ndarray
    precision: np.ndarray
    threshold: float

    def scores(self, features: np.ndarray) -> np.ndarray:
        """float64 (N,): the Mahalanobis distance of each feature row (N, D) to the nearest mean."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.means.shape[1]:
            raise ValueError(f"expected features (N, {self.means.shape[1]}), got {f.shape}")
        best = np.full(f.shape[0], np.inf)
        p = self.precision.astype(np.float64)
        for mean in self.means.astype(np.float64):
            d = f - mean
            best = np.minimum(best, np.einsum("nd,de,ne->n", d, p, d))
        return np.sqrt(np.maximum(best, 0.0))


@dataclass(frozen=True)
class OodVerdict:
    """Whether one input (an image, a volume, or a scan's slices) is like the model's training data."""

    model_id: str
    score: float
    threshold: float
    unit: str = "image"
    #: For the slice model on a scan: the share of its slices above the threshold.
    flagged_share: float | None = None

    @property
    def in_distribution(self) -> bool:
        return bool(self.score <= self.threshold)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "in_distribution": self.in_distribution,
            "ood_score": round(float(self.score), 4),
            "ood_threshold": round(float(self.threshold), 4),
        }
        if self.flagged_share is not None:
            out["ood_flagged_slices"] = round(float(self.flagged_share), 4)
        return out

    def headline(self) -> str:
        """One plain sentence for the page, the CLI and the report."""
        what = {"image": "image", "volume": "CT volume", "scan": "CT series"}.get(self.unit, self.unit)
        if self.in_distribution:
            return (
                f"In distribution: this {what} is like the images {self.model_id} was trained on "
                f"(score {self.score:.1f} <= threshold {self.threshold:.1f})."
            )
        return (
            f"This {what} is unlike the images {self.model_id} was trained on: its prediction is not shown as a "
            f"result (score {self.score:.1f} > threshold {self.threshold:.1f})."
        )


def fit_reference(
    train_features: np.ndarray,
    train_labels: np.ndarray | None,
    dev_features: np.ndarray,
    accept: float = DEV_ACCEPT,
) -> OodReference:
    """Class means and a shared Ledoit-Wolf covariance of ``train_features`` (N, D); the threshold
    is the ``accept`` quantile of the dev distances. ``train_labels`` None: one mean (multi-label)."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(train_features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError("fitting an OOD reference needs at least two training feature rows")
    labels = np.zeros(x.shape[0], dtype=int) if train_labels is None else np.asarray(train_labels).astype(int)
    classes = sorted(set(labels.tolist()))
    means = np.stack([x[labels == c].mean(axis=0) for c in classes])
    centred = x - means[np.searchsorted(classes, labels)]
    lw = LedoitWolf(assume_centered=True).fit(centred)
    ref = OodReference(means.astype(np.float32), lw.precision_.astype(np.float32), threshold=np.inf)
    dev = ref.scores(dev_features)
    return OodReference(ref.means, ref.precision, float(np.quantile(dev, accept)))


def save_reference(ref: OodReference, path: Path) -> str:
    """Write the reference (float32 tensors); return the file's sha256."""
    torch.save(
        {
            "means": torch.from_numpy(np.ascontiguousarray(ref.means, dtype=np.float32)),
            "precision": torch.from_numpy(np.ascontiguousarray(ref.precision, dtype=np.float32)),
            "threshold": torch.tensor(float(ref.threshold), dtype=torch.float64),
        },
        path,
    )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_reference(path: Path, sha256: str) -> OodReference:
    """Read a reference after checking its sha256 against the card."""
    if not path.is_file():
        raise WeightsIntegrityError(f"The OOD reference {path.name} is missing.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise WeightsIntegrityError(
            f"The OOD reference {path.name} does not match the manifest (sha256 {digest[:12]}... instead of "
            f"{sha256[:12]}...)."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return OodReference(
            state["means"].numpy().astype(np.float32),
            state["precision"].numpy().astype(np.float32),
            float(state["threshold"]),
        )
    except (KeyError, RuntimeError, AttributeError, TypeError) as e:
        raise WeightsIntegrityError(f"The OOD reference {path.name} does not load ({e}).") from e


def card_record(ref: OodReference, file_name: str, sha256: str, fitted_on: str, n_train: int, n_dev: int) -> dict:
    """The card's ``ood`` entry."""
    return {
        "method": METHOD,
        "features": "penultimate layer (the input of the last fully connected layer)",
        "file": file_name,
        "sha256": sha256,
        "threshold": float(ref.threshold),
        "accept_dev": DEV_ACCEPT,
        "fitted_on": fitted_on,
        "n_train": int(n_train),
        "n_dev": int(n_dev),
        "dim": int(ref.means.shape[1]),
        "classes": int(ref.means.shape[0]),
    }


@torch.inference_mode()
def embed_batches(
    module: torch.nn.Module,
    inputs: Iterable[torch.Tensor],
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """float32 (N, D) penultimate features of prepared input batches (module in eval mode)."""
    was_training = module.training
    module.eval()
    out = []
    try:
        for x in inputs:
            out.append(module.embed(x.to(device, torch.float32)).float().cpu().numpy())
            if progress is not None:
                progress(x.shape[0])
    finally:
        module.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def batched(x: torch.Tensor, size: int = FEATURE_BATCH) -> Iterable[torch.Tensor]:
    """Split a prepared tensor (N, ...) into batches of at most ``size``."""
    for start in range(0, x.shape[0], size):
        yield x[start : start + size]


def verdict(model_id: str, ref: OodReference, features: np.ndarray, unit: str = "image") -> OodVerdict:
    """The verdict on one input from its features (1, D), or on a scan from its slices' (Z, D)."""
    scores = ref.scores(features)
    if unit == "scan":
        return OodVerdict(
            model_id, float(np.median(scores)), ref.threshold, unit, float(np.mean(scores > ref.threshold))
        )
    return OodVerdict(model_id, float(scores[0]), ref.threshold, unit)


def write_reference(
    weights_dir: Path, model_id: str, ref: OodReference, fitted_on: str, n_train: int, n_dev: int
) -> dict[str, Any]:
    """Save ``ref`` beside the weights as ``<model_id>.ood.pt``; return the card's ``ood`` entry."""
    name = f"{model_id}{SUFFIX}"
    digest = save_reference(ref, Path(weights_dir) / name)
    return card_record(ref, name, digest, fitted_on, n_train, n_dev)
