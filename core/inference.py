"""Predictions of the 2D X-ray classifiers, one model or several, on :class:`XrayImage` s."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from core.explain.attributions import GRAD_CAM, explain
from core.models.registry import LoadedModel
from core.preprocess import xray_to_input
from core.types import ExplanationMap, Prediction, XrayImage

ENSEMBLE_ID = "average"


def predict_input(model: LoadedModel, x: torch.Tensor) -> Prediction:
    """Softmax probabilities of one prepared input (1, C, S, S), divided by the card's temperature."""
    card = model.card
    with model.lock, torch.inference_mode():
        logits = model.module(x.to(model.device))[0].float().cpu()
    probs = torch.softmax(logits / card.temperature, dim=0)
    return Prediction(
        model_id=card.id,
        model_version=card.version,
        labels=card.labels,
        probabilities=tuple(float(p) for p in probs),
        calibrated=card.temperature != 1.0,
    )


def predict_xray(model: LoadedModel, image: XrayImage) -> Prediction:
    """3-class probabilities of one model for one radiograph."""
    return predict_input(model, xray_to_input(image, model.card.input))


def explain_xray(
    model: LoadedModel,
    image: XrayImage,
    target_label: str | None = None,
    method: str = GRAD_CAM,
    prediction: Prediction | None = None,
) -> ExplanationMap:
    """Attribution map over the image's own (H, W); target default: the predicted class."""
    x = xray_to_input(image, model.card.input)
    if target_label is None:
        prediction = prediction or predict_input(model, x)
        target = prediction.predicted_index
    else:
        target = model.card.labels.index(target_label)
    return explain(model, x, target, method=method, out_hw=image.shape)


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
