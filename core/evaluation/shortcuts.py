"""Shortcut checks of the 2D image classifiers, measured on their held-out split.

The public chest sets carry cues that are not the disease: burned-in markers, black frames and
devices sit at the image edges, and every COVID-19 film of the real X-ray set comes from other
hospitals than its Normal and Pneumonia films. Two checks a careful reviewer asks for:

- **border check**: every held-out image is scored again with everything outside the central
  region blanked to black (the outer :data:`BORDER` of each side); the AUC of each class
  against the rest, and of Pneumonia against Normal (the within-site contrast), is compared
  with the plain one. A model that reads the disease keeps its AUC; one that reads markers or
  frames loses it;
- **where it looks**: the share of the Grad-CAM map's mass inside the central region, over the
  held-out images of each (true) class, explaining the class the model predicts. The central
  region is ``(1 - 2 * BORDER) ** 2`` of the image (49% at 15%): a map spread evenly would put
  that share there.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from core.errors import InsufficientDataError, InvalidInputError
from core.evaluation.data import IMAGE_KINDS, evaluation_data, model_kind
from core.explain.attributions import GRAD_CAM, attribute
from core.labels import PNEUMONIA_ANY
from core.models.manifest import write_manifest_entry
from core.models.registry import LoadedModel, ModelRegistry
from core.preprocess import normalise, to_unit_square

#: Share of each side blanked by the border check, and left out of the central region.
BORDER = 0.15


def central_mask(size: int, border: float = BORDER) -> np.ndarray:
    """bool (size, size): True inside the central region."""
    cut = int(round(border * size))
    mask = np.zeros((size, size), dtype=bool)
    mask[cut : size - cut, cut : size - cut] = True
    return mask


def blank_border(unit: torch.Tensor, border: float = BORDER) -> torch.Tensor:
    """(N, 1, S, S) in [0, 1] with everything outside the central region set to 0 (black)."""
    mask = torch.from_numpy(central_mask(unit.shape[-1], border))
    return unit * mask.to(unit.dtype)


def _aucs(y: np.ndarray, p: np.ndarray, labels: tuple[str, ...]) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    out: dict[str, float] = {}
    for k, label in enumerate(labels):
        if 0 < (y == k).sum() < len(y):
            out[f"{label} vs rest"] = float(roc_auc_score(y == k, p[:, k]))
    if PNEUMONIA_ANY in labels and "Normal" in labels:
        a, b = labels.index(PNEUMONIA_ANY), labels.index("Normal")
        keep = (y == a) | (y == b)
        if keep.any():
            out[f"{PNEUMONIA_ANY} vs Normal"] = float(
                roc_auc_score(y[keep] == a, p[keep, a] / (p[keep, a] + p[keep, b]))
            )
    return out


def shortcut_check(model: LoadedModel, border: float = BORDER) -> dict[str, Any]:
    """Both checks on ``model``'s held-out split (see the module docstring)."""
    card = model.card
    if model_kind(card) not in IMAGE_KINDS:
        raise InvalidInputError(f"{card.id} is not a 2D single-label image classifier; shortcut checks are for those.")
    data = evaluation_data(card, split="test")
    labels = tuple(card.labels)
    units, y = [], []
    for case in data.cases:
        units.append(to_unit_square(np.asarray(case.load(), dtype=np.float32), card.input.size))
        y.append(labels.index(case.label))
    if not units:
        raise InsufficientDataError(f"No held-out images of {card.id} could be read.")
    x = torch.cat(units)
    target = np.array(y)

    def probabilities(batch: torch.Tensor) -> np.ndarray:
        out = []
        with model.lock, torch.inference_mode():
            for start in range(0, batch.shape[0], 32):
                logits = model.module(normalise(batch[start : start + 32], card.input).to(model.device)).float()
                out.append(torch.softmax(logits / card.temperature, dim=1).cpu().numpy())
        return np.concatenate(out)

    plain = _aucs(target, probabilities(x), labels)
    blanked = _aucs(target, probabilities(blank_border(x, border)), labels)
    mask = central_mask(card.input.size, border)
    shares: dict[str, list[float]] = {label: [] for label in labels}
    for i in range(x.shape[0]):
        cam, _ = attribute(model, normalise(x[i : i + 1], card.input), None, method=GRAD_CAM, out_hw=mask.shape)
        total = float(cam.values.sum())
        if total > 0:
            shares[labels[target[i]]].append(float(cam.values[mask].sum()) / total)
    positive = "COVID-19" if "COVID-19" in labels else labels[-1]
    return {
        "n": int(x.shape[0]),
        "border": border,
        "central_area": float(mask.mean()),
        "positive": positive,
        "auc": plain.get(f"{positive} vs rest", float("nan")),
        "auc_border_blanked": blanked.get(f"{positive} vs rest", float("nan")),
        "aucs": plain,
        "aucs_border_blanked": blanked,
        "cam_central_share": {k: float(np.mean(v)) for k, v in shares.items() if v},
        "cam_target": "the predicted class",
        "measured_on": data.description,
    }


def record_shortcut_check(registry: ModelRegistry, model_id: str, caveats: str | None = None) -> dict[str, Any]:
    """Run :func:`shortcut_check` and store it in the card's metrics (``shortcuts``); ``caveats``,
    when given, replaces the card's caveats (what a reader of these figures must know)."""
    model = registry.load(model_id)
    result = shortcut_check(model)
    card = ModelRegistry(registry.weights_dir, device=registry.device).card(model_id)  # as on disk now
    extra = card.extra | ({"caveats": caveats} if caveats else {})
    write_manifest_entry(registry.weights_dir, replace(card, metrics=card.metrics | {"shortcuts": result}, extra=extra))
    return result
