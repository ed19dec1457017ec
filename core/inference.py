"""Predictions of the 2D X-ray classifiers, one model or several, on :class:`XrayImage` s."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from core.explain.attributions import GRAD_CAM, attribute
from core.models.registry import LoadedModel
from core.preprocess import xray_to_input
from core.types import ExplanationMap, Prediction, XrayImage

ENSEMBLE_ID = "average"


def _prediction(model: LoadedModel, logits: torch.Tensor) -> Prediction:
    card = model.card
    probs = torch.softmax(logits.float() / card.temperature, dim=0)
    return Prediction(
        model_id=card.id,
        model_version=card.version,
        labels=card.labels,
        probabilities=tuple(float(p) for p in probs),
        calibrated=card.temperature != 1.0,
    )


def predict_input(model: LoadedModel, x: torch.Tensor) -> Prediction:
    """Softmax probabilities of one prepared input (1, C, S, S), divided by the card's temperature."""
    with model.lock, torch.inference_mode():
        logits = model.module(x.to(model.device))[0].float().cpu()
    return _prediction(model, logits)


def predict_xray(model: LoadedModel, image: XrayImage) -> Prediction:
    """3-class probabilities of one model for one radiograph."""
    return predict_input(model, xray_to_input(image, model.card.input))


def analyse_xray(
    model: LoadedModel,
    image: XrayImage,
    target_label: str | None = None,
    method: str = GRAD_CAM,
) -> tuple[Prediction, ExplanationMap]:
    """Prediction and attribution map (over the image's own (H, W)) from one prepared input.

    ``target_label`` None explains the predicted class. With Grad-CAM, both come from a
    single forward pass.
    """
    x = xray_to_input(image, model.card.input)
    target = None if target_label is None else model.card.labels.index(target_label)
    explanation, logits = attribute(model, x, target, method=method, out_hw=image.shape)
    return _prediction(model, logits), explanation


def explain_xray(
    model: LoadedModel,
    image: XrayImage,
    target_label: str | None = None,
    method: str = GRAD_CAM,
) -> ExplanationMap:
    """Attribution map over the image's own (H, W); target default: the predicted class."""
    return analyse_xray(model, image, target_label, method)[1]


def average_predictions(predictions: Sequence[Prediction]) -> Prediction:
    """The unweighted mean of several models' probabilities (they must share a label order)."""
    if not predictions:
        raise ValueError("no predictions to average")
    labels = predictions[0].labels
    if any(p.labels != labels for p in predictions):
        raise ValueError("cannot average models with different label orders")
    probs = torch.tensor([p.probabilities for p in predictions], dtype=torch.float64).mean(0)
    return Prediction(
        model_id=ENSEMBLE_ID,
        model_version="+".join(f"{p.model_id}@{p.model_version}" for p in predictions),
        labels=labels,
        probabilities=tuple(float(v) for v in probs),
        calibrated=all(p.calibrated for p in predictions),
    )
