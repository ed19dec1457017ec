"""Attribution maps of the 2D classifiers (the X-ray models, the CT slice model) over the image.

A front over :class:`core.explain.explainer.Explainer` for a registered classifier: the
class target checked against the card's labels, the card's Grad-CAM layer and baseline (the
black image), and the map as an :class:`ExplanationMap` in [0, 1] at the size asked for.
Methods: Grad-CAM (the default), Guided Grad-CAM, Integrated Gradients, Occlusion.
"""

from __future__ import annotations

import torch

from core.errors import DashboardError
from core.explain.explainer import (
    GRAD_CAM,
    INTEGRATED_GRADIENTS,
    METHOD_ALIASES,
    METHODS,
    OCCLUSION,
    Attribution,
    Explainer,
)
from core.models.manifest import ModelCard
from core.models.registry import LoadedModel
from core.preprocess import baseline_input
from core.types import ExplanationMap

#: The method names are the explainer's; pages and the CLI take them from here with the functions.
__all__ = [
    "GRAD_CAM",
    "METHODS",
    "METHOD_ALIASES",
    "attribute",
    "classifier_attribution",
    "explain",
    "explanation_map",
]


def classifier_attribution(
    model: LoadedModel, x: torch.Tensor, target: int | None, method: str = GRAD_CAM
) -> Attribution:
    """Attribute class ``target`` (None: the predicted class) of one prepared input (1, C, S, S).

    The map is on the Grad-CAM layer's grid (Grad-CAM) or the input's; the attribution's
    outputs are the model's logits from the same forward pass.
    """
    method = METHOD_ALIASES.get(method, method)
    if method not in METHODS:
        raise DashboardError(f"Unknown attribution method '{method}'. Choose one of: {', '.join(METHODS)}.")
    card = model.card
    if target is not None and not 0 <= target < len(card.labels):
        raise DashboardError(f"Target class {target} is out of range for model {card.id}.")
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"explain takes one input (1, C, S, S), got {tuple(x.shape)}")
    baseline = baseline_input(card.input) if method in (INTEGRATED_GRADIENTS, OCCLUSION) else None
    return Explainer(model).attribute(x, target, method=method, baseline=baseline)


def explanation_map(card: ModelCard, attribution: Attribution, out_hw: tuple[int, int]) -> ExplanationMap:
    """``attribution`` (of the model of ``card``) as an :class:`ExplanationMap` of shape ``out_hw``,
    in [0, 1]."""
    return ExplanationMap(
        values=attribution.resampled(out_hw),
        method=attribution.method,
        target_label=card.labels[attribution.target],
        model_id=card.id,
    )


def explain(
    model: LoadedModel,
    x: torch.Tensor,
    target: int | None,
    method: str = GRAD_CAM,
    out_hw: tuple[int, int] | None = None,
) -> ExplanationMap:
    """Attribute the logit of class ``target`` (None: the predicted class) for ``x`` (1, C, S, S).

    Returns an :class:`ExplanationMap` of shape ``out_hw`` (default (S, S)) in [0, 1].
    """
    return attribute(model, x, target, method, out_hw)[0]


def attribute(
    model: LoadedModel,
    x: torch.Tensor,
    target: int | None,
    method: str = GRAD_CAM,
    out_hw: tuple[int, int] | None = None,
) -> tuple[ExplanationMap, torch.Tensor]:
    """:func:`explain`, also returning the model's logits for ``x`` as a float32 (K,) CPU tensor.

    Grad-CAM takes one forward pass for both: the logits are recorded on the way and the
    target (when None) is chosen from them before the backward pass, which stops at the
    Grad-CAM layer. So prediction + Grad-CAM costs little more than a prediction.
    """
    attribution = classifier_attribution(model, x, target, method)
    size = x.shape[-1]
    return explanation_map(model.card, attribution, out_hw or (size, size)), attribution.outputs[0]
