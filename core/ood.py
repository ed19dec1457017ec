"""Is an input like what a model was trained on? A reference of each model's own features.

A classifier answers for every input, even a photograph; its softmax says nothing about
whether the input resembles its training data. Each model therefore carries a reference of
its own *features* on its training split, as in Lee et al. (NeurIPS 2018, "A simple unified
framework for detecting out-of-distribution samples and adversarial attacks"): at a few depths
of the network (the architecture's ``ood_layers``, the last being the penultimate layer, the
input of the final fully connected layer) the feature maps are averaged over space, and a
Gaussian with one shared covariance (Ledoit-Wolf shrinkage, scikit-learn) is fitted to them:
around each class mean at the penultimate layer, around one mean at the earlier layers (they
see texture and contrast, not classes), where the spatial standard deviations of the feature
maps are modelled beside their means. The Mahalanobis distance at each depth is divided by its
median on the dev split, and the *OOD score* is the mean of these ratios (1 for a typical dev
input): an image can be unlike the training data in its texture (a synthetic phantom for a
model trained on real films) or in its content (a photograph, a lateral film). The *threshold* is the
:data:`DEV_ACCEPT` quantile of the dev scores, so 95% of in-distribution dev inputs are
accepted. An input scoring above the threshold is "unlike this model's training data", and its
prediction is not shown as a result.

The reference is stored beside the weights (``<model id>.ood.pt``, float32 tensors read with
``torch.load(weights_only=True)`` after a sha256 check) and described in the card's ``ood``
entry (file, sha256, threshold, where it was fitted, and the measured detection figures).

Units: an X-ray (or a slice image) is scored once; a CT volume once by COVID3D; for the CT
slice model every axial slice is scored and the scan's score is the median over its slices
(a scan is judged by its typical slice; the share of flagged slices is reported too).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Iterable, Sequence
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
METHOD = "mahalanobis-multilayer"
#: Inputs per forward pass when computing features.
FEATURE_BATCH = 32

#: Features of one input at each layer: a list of (N, C_l) arrays, one per layer.
Features = Sequence[np.ndarray]


@dataclass(frozen=True)
class LayerReference:
    """One layer's Gaussian: means (K, C) (K = 1 but at the penultimate layer), the shared
    precision (C, C), and ``scale``, the median dev distance that distances are divided by."""

    name: str
    means: np.ndarray
    precision: np.ndarray
    scale: float = 1.0

    def distances(self, features: np.ndarray) -> np.ndarray:
        """float64 (N,): the Mahalanobis distance of each row (N, C) to the nearest mean."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.means.shape[1]:
            raise ValueError(f"expected {self.name} features (N, {self.means.shape[1]}), got {f.shape}")
        best = np.full(f.shape[0], np.inf)
        p = self.precision.astype(np.float64)
        for mean in self.means.astype(np.float64):
            d = f - mean
            best = np.minimum(best, np.einsum("nd,de,ne->n", d, p, d))
        return np.sqrt(np.maximum(best, 0.0))


@dataclass(frozen=True)
class Lookalike:
    """A known look-alike domain (the demo's synthetic phantoms, for a model trained on real
    images): a Gaussian of the model's penultimate features on such inputs, and the distance
    ratio below which an input counts as one of them."""

    what: str
    layer: LayerReference
    threshold: float

    def matches(self, penultimate: np.ndarray) -> np.ndarray:
        """bool (N,): inputs nearer this domain than ``threshold`` (in its own median distances)."""
        return self.layer.distances(penultimate) / self.layer.scale < self.threshold


@dataclass(frozen=True)
class OodReference:
    """The layers' Gaussians and the threshold on the score (fitted on the dev split), and
    optionally a look-alike domain that is out of distribution however near it scores."""

    layers: tuple[LayerReference, ...]
    threshold: float
    lookalike: Lookalike | None = None

    @property
    def dim(self) -> int:
        """Width of the penultimate features."""
        return int(self.layers[-1].means.shape[1])

    @property
    def classes(self) -> int:
        return int(self.layers[-1].means.shape[0])

    def layer_ratios(self, features: Features) -> np.ndarray:
        """float64 (N, L): each layer's distance over its dev median."""
        if len(features) != len(self.layers):
            raise ValueError(f"expected features of {len(self.layers)} layers, got {len(features)}")
        return np.stack([ref.distances(f) / ref.scale for ref, f in zip(self.layers, features, strict=True)], axis=1)

    def scores(self, features: Features) -> np.ndarray:
        """float64 (N,): the OOD score, the mean of the layers' ratios (1 is a typical dev input);
        with a look-alike domain, at least ``threshold * t / r`` where r is the input's distance
        ratio to that domain and t its threshold, so an input of that domain (r < t) scores above
        the threshold however near the training data it sits."""
        score = self.layer_ratios(features).mean(axis=1)
        if self.lookalike is not None and np.isfinite(self.threshold):
            look = self.lookalike
            r = np.maximum(look.layer.distances(features[-1]) / look.layer.scale, 1e-9)
            score = np.maximum(score, self.threshold * look.threshold / r)
        return score

    def lookalikes(self, features: Features) -> np.ndarray:
        """bool (N,): inputs of the look-alike domain (all False without one)."""
        if self.lookalike is None:
            return np.zeros(np.asarray(features[-1]).shape[0], dtype=bool)
        return self.lookalike.matches(features[-1])

    def flagged(self, features: Features) -> np.ndarray:
        """bool (N,): unlike the training data (above the threshold, or of the look-alike domain)."""
        return self.scores(features) > self.threshold

    def with_lookalike(
        self, what: str, train: np.ndarray, dev_real: np.ndarray, quantile: float = 0.01
    ) -> OodReference:
        """This reference with a look-alike domain fitted on ``train`` (penultimate features of
        such inputs); its threshold is the ``quantile`` of the real dev inputs' ratios, so about 1%
        of real dev inputs could be taken for it (halved, for a margin)."""
        g = _gaussian("lookalike", train, None)
        scale = float(np.median(g.distances(train))) or 1.0
        layer = LayerReference("lookalike", g.means, g.precision, scale)
        cut = 0.5 * float(np.quantile(layer.distances(dev_real) / scale, quantile))
        return OodReference(self.layers, self.threshold, Lookalike(what, layer, cut))


@dataclass(frozen=True)
class OodVerdict:
    """Whether one input (an image, a volume, or a scan's slices) is like the model's training data."""

    model_id: str
    score: float
    threshold: float
    unit: str = "image"
    #: For the slice model on a scan: the share of its slices above the threshold.
    flagged_share: float | None = None
    #: The look-alike domain the input belongs to (e.g. "a synthetic demo phantom"), if any.
    lookalike: str | None = None

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
        if self.lookalike is not None:
            out["ood_lookalike"] = self.lookalike
        return out

    def comparison(self) -> str:
        """ "score 1.324 > threshold 1.318": two decimals, or as many more as it takes for the two
        numbers to read as different as they are (up to five)."""
        digits = 2
        while (
            digits < 5 and f"{self.score:.{digits}f}" == f"{self.threshold:.{digits}f}" and self.score != self.threshold
        ):
            digits += 1
        sign = "<=" if self.in_distribution else ">"
        return f"score {self.score:.{digits}f} {sign} threshold {self.threshold:.{digits}f}"

    def headline(self) -> str:
        """One plain sentence for the page, the CLI and the report."""
        what = {"image": "image", "volume": "CT volume", "scan": "CT series"}.get(self.unit, self.unit)
        if self.in_distribution:
            return (
                f"In distribution: this {what} is like the images {self.model_id} was trained on ({self.comparison()})."
            )
        if self.lookalike is not None:
            return (
                f"This {what} looks like {self.lookalike}, not like the images {self.model_id} was trained on: its "
                f"prediction is not shown as a result."
            )
        return (
            f"This {what} is unlike the images {self.model_id} was trained on: its prediction is not shown as a "
            f"result ({self.comparison()})."
        )


def _gaussian(name: str, x: np.ndarray, labels: np.ndarray | None) -> LayerReference:
    from sklearn.covariance import LedoitWolf

    x = np.asarray(x, dtype=np.float64)
    y = np.zeros(x.shape[0], dtype=int) if labels is None else np.asarray(labels).astype(int)
    classes = sorted(set(y.tolist()))
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    centred = x - means[np.searchsorted(classes, y)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    return LayerReference(name, means.astype(np.float32), precision.astype(np.float32))


def fit_reference(
    train_features: Features,
    train_labels: np.ndarray | None,
    dev_features: Features,
    names: Sequence[str] | None = None,
    accept: float = DEV_ACCEPT,
) -> OodReference:
    """Fit each layer's Gaussian on ``train_features`` (a list of (N, C_l), the last the penultimate
    layer, where ``train_labels`` give the class means; None: one mean, as for a multi-label
    model); scale each layer by its median dev distance; the threshold is the ``accept``
    quantile of the dev scores."""
    n = len(train_features)
    if n == 0 or np.asarray(train_features[0]).shape[0] < 2:
        raise ValueError("fitting an OOD reference needs at least two training feature rows")
    names = list(names) if names is not None else [f"layer{i + 1}" for i in range(n)]
    layers = []
    for i, (name, x, dev) in enumerate(zip(names, train_features, dev_features, strict=True)):
        ref = _gaussian(name, x, train_labels if i == n - 1 else None)
        scale = float(np.median(ref.distances(dev))) or 1.0
        layers.append(LayerReference(ref.name, ref.means, ref.precision, scale))
    partial = OodReference(tuple(layers), np.inf)
    return OodReference(partial.layers, float(np.quantile(partial.scores(dev_features), accept)))


def save_reference(ref: OodReference, path: Path) -> str:
    """Write the reference (float32 tensors); return the file's sha256."""
    state: dict[str, Any] = {"names": [layer.name for layer in ref.layers], "threshold": float(ref.threshold)}
    for i, layer in enumerate(ref.layers):
        state[f"{i}.means"] = torch.from_numpy(np.ascontiguousarray(layer.means, dtype=np.float32))
        state[f"{i}.precision"] = torch.from_numpy(np.ascontiguousarray(layer.precision, dtype=np.float32))
        state[f"{i}.scale"] = float(layer.scale)
    if ref.lookalike is not None:
        look = ref.lookalike
        state |= {
            "lookalike.what": look.what,
            "lookalike.means": torch.from_numpy(np.ascontiguousarray(look.layer.means, dtype=np.float32)),
            "lookalike.precision": torch.from_numpy(np.ascontiguousarray(look.layer.precision, dtype=np.float32)),
            "lookalike.scale": float(look.layer.scale),
            "lookalike.threshold": float(look.threshold),
        }
    torch.save(state, path)
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
        layers = tuple(
            LayerReference(
                str(name),
                state[f"{i}.means"].numpy().astype(np.float32),
                state[f"{i}.precision"].numpy().astype(np.float32),
                float(state[f"{i}.scale"]),
            )
            for i, name in enumerate(state["names"])
        )
        lookalike = None
        if "lookalike.what" in state:
            lookalike = Lookalike(
                str(state["lookalike.what"]),
                LayerReference(
                    "lookalike",
                    state["lookalike.means"].numpy().astype(np.float32),
                    state["lookalike.precision"].numpy().astype(np.float32),
                    float(state["lookalike.scale"]),
                ),
                float(state["lookalike.threshold"]),
            )
        return OodReference(layers, float(state["threshold"]), lookalike)
    except (KeyError, RuntimeError, AttributeError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise WeightsIntegrityError(f"The OOD reference {path.name} does not load ({e}).") from e


def card_record(ref: OodReference, file_name: str, sha256: str, fitted_on: str, n_train: int, n_dev: int) -> dict:
    """The card's ``ood`` entry."""
    return {
        "method": METHOD,
        "features": "spatial means of "
        + ", ".join(layer.name for layer in ref.layers)
        + " (the last: the penultimate layer, the input of the final fully connected layer)",
        "file": file_name,
        "sha256": sha256,
        "threshold": float(ref.threshold),
        "accept_dev": DEV_ACCEPT,
        "fitted_on": fitted_on,
        "n_train": int(n_train),
        "n_dev": int(n_dev),
        "dim": ref.dim,
        "classes": ref.classes,
        "layers": [layer.name for layer in ref.layers],
        "lookalike": None
        if ref.lookalike is None
        else {"what": ref.lookalike.what, "threshold": float(ref.lookalike.threshold)},
    }


def pooled(output: torch.Tensor, with_std: bool = False) -> np.ndarray:
    """A feature map (N, C, ...) summarised over its spatial axes: (N, C) float32 means, with
    ``with_std`` (N, 2C): the means, then the standard deviations (texture)."""
    out = output.detach().float()
    if out.ndim <= 2:
        return out.cpu().numpy()
    flat = out.flatten(2)
    if with_std:
        return torch.cat([flat.mean(dim=2), flat.std(dim=2)], dim=1).cpu().numpy()
    return flat.mean(dim=2).cpu().numpy()


@torch.inference_mode()
def layer_features(
    module: torch.nn.Module,
    inputs: Iterable[torch.Tensor],
    device: torch.device,
    layers: Sequence[str],
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Spatial means of ``layers``' outputs (a list of (N, C_l) float32) over prepared input batches,
    from forward passes in eval mode; the module's mode is restored and its hooks removed."""
    captured: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    last = layers[-1]
    handles = [
        module.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: captured[name].append(pooled(out, with_std=name != last))
        )
        for name in layers
    ]
    was_training = module.training
    module.eval()
    try:
        for x in inputs:
            module(x.to(device, torch.float32))
            if progress is not None:
                progress(x.shape[0])
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return [np.concatenate(captured[name]) for name in layers]


def batched(x: torch.Tensor, size: int = FEATURE_BATCH) -> Iterable[torch.Tensor]:
    """Split a prepared tensor (N, ...) into batches of at most ``size``."""
    for start in range(0, x.shape[0], size):
        yield x[start : start + size]


def verdict(model_id: str, ref: OodReference, features: Features, unit: str = "image") -> OodVerdict:
    """The verdict on one input from its features (each (1, C_l)), or on a scan from its slices' (Z, C_l)."""
    scores = ref.scores(features)
    look = ref.lookalikes(features)
    what = ref.lookalike.what if ref.lookalike is not None else None
    if unit == "scan":
        return OodVerdict(
            model_id,
            float(np.median(scores)),
            ref.threshold,
            unit,
            float(np.mean(ref.flagged(features))),
            what if look.mean() > 0.5 else None,
        )
    return OodVerdict(model_id, float(scores[0]), ref.threshold, unit, lookalike=what if look[0] else None)


def write_reference(
    weights_dir: Path, model_id: str, ref: OodReference, fitted_on: str, n_train: int, n_dev: int
) -> dict[str, Any]:
    """Save ``ref`` beside the weights as ``<model_id>.ood.pt``; return the card's ``ood`` entry."""
    name = f"{model_id}{SUFFIX}"
    digest = save_reference(ref, Path(weights_dir) / name)
    return card_record(ref, name, digest, fitted_on, n_train, n_dev)
