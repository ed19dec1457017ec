"""Predictions of the 2D X-ray classifiers, one model or several, on :class:`XrayImage` s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from core.explain.attributions import GRAD_CAM, classifier_attribution, explanation_map
from core.explain.explainer import Attribution
from core.explain.overlay import png_bytes, render_overlay
from core.models.manifest import ModelCard
from core.models.registry import LoadedModel
from core.ood import OodVerdict
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


@dataclass(frozen=True, eq=False)
class XrayAnalysis:
    """One model's prediction on one radiograph with its attribution, from one pass (Grad-CAM).

    The map is kept on the Grad-CAM layer's grid (or the input's) and drawn at the size it is
    shown (:meth:`explanation`): a page at its display size, a download at the image's own.
    """

    prediction: Prediction
    attribution: Attribution
    card: ModelCard
    image_shape: tuple[int, int]

    def explanation(self, shape: tuple[int, int] | None = None) -> ExplanationMap:
        """The map over ``shape`` (default: the image's own (H, W)), in [0, 1]."""
        return explanation_map(self.card, self.attribution, shape or self.image_shape)

    def overlay_png(
        self, image: XrayImage, window: tuple[float, float], colormap: str = "Jet", opacity: float = 0.5
    ) -> bytes:
        """The map over ``image`` at its own size and ``window`` (center, width), as PNG."""
        rgb = render_overlay(image.windowed(*window), self.explanation(image.shape).values, colormap, opacity)
        return png_bytes(rgb)


def xray_analysis(
    model: LoadedModel,
    image: XrayImage,
    target_label: str | None = None,
    method: str = GRAD_CAM,
) -> XrayAnalysis:
    """Prediction and attribution from one prepared input; ``target_label`` None explains the
    predicted class. With Grad-CAM, both come from a single forward pass."""
    x = xray_to_input(image, model.card.input)
    target = None if target_label is None else model.card.labels.index(target_label)
    attribution = classifier_attribution(model, x, target, method)
    return XrayAnalysis(_prediction(model, attribution.outputs[0]), attribution, model.card, image.shape)


def analyse_xray(
    model: LoadedModel,
    image: XrayImage,
    target_label: str | None = None,
    method: str = GRAD_CAM,
    shape: tuple[int, int] | None = None,
) -> tuple[Prediction, ExplanationMap]:
    """Prediction and attribution map over ``shape`` (default the image's own (H, W)); see
    :func:`xray_analysis`. A map made at the size it is shown costs least."""
    analysis = xray_analysis(model, image, target_label, method)
    return analysis.prediction, analysis.explanation(shape)


def explain_xray(
    model: LoadedModel,
    image: XrayImage,
    target_label: str | None = None,
    method: str = GRAD_CAM,
) -> ExplanationMap:
    """Attribution map over the image's own (H, W); target default: the predicted class."""
    return analyse_xray(model, image, target_label, method)[1]


def xray_ood(model: LoadedModel, image: XrayImage) -> OodVerdict | None:
    """Whether ``image`` is like the images ``model`` (any X-ray model) was trained on; None
    when the model has no OOD reference."""
    return model.ood_verdict(xray_to_input(image, model.card.input))


@dataclass(frozen=True)
class Reading:
    """One model's prediction on one input, with whether the input is like its training data."""

    prediction: Prediction
    ood: OodVerdict | None
    domain: str  # the card's domain_words: "trained on real chest X-rays" / "demo: trained on ..."

    @property
    def accepted(self) -> bool:
        """Shown as a result: in distribution (or the model has no reference to tell)."""
        return self.ood is None or self.ood.in_distribution

    def to_dict(self) -> dict:
        out = self.prediction.to_dict() | {"domain": self.domain}
        if self.ood is None:
            return out | {"in_distribution": None, "ood_score": None, "ood_threshold": None}
        return out | self.ood.to_dict()


@dataclass(frozen=True)
class ReadingSummary:
    """What a page leads with for one input read by several models.

    ``headline`` is None when no model accepted the input: the page then shows no label.
    ``average`` is the mean of ``averaged`` (two or more accepted models with the same classes);
    ``not_averaged`` are accepted models left out of it because their classes differ;
    ``rejected`` the models for which the input is unlike their training data.
    """

    headline: Prediction | None
    average: Prediction | None
    averaged: tuple[str, ...] = ()
    not_averaged: tuple[str, ...] = ()
    rejected: tuple[Reading, ...] = field(default=())

    def average_words(self) -> str:
        """What the average covers, in a sentence (empty without an average)."""
        if self.average is None:
            return ""
        words = f"Average of {', '.join(self.averaged)}: the models with the same classes that accept this image."
        if self.not_averaged:
            words += f" Not averaged (other classes): {', '.join(self.not_averaged)}."
        return words


def summarise(readings: Sequence[Reading], prefer: str | None = None) -> ReadingSummary:
    """Lead with the accepted models: the label set of ``prefer`` (when accepted) or of the most
    accepted models; an average only over accepted models of that label set."""
    accepted = [r for r in readings if r.accepted]
    rejected = tuple(r for r in readings if not r.accepted)
    if not accepted:
        return ReadingSummary(None, None, rejected=rejected)
    groups: dict[tuple[str, ...], list[Reading]] = {}
    for r in accepted:
        groups.setdefault(r.prediction.labels, []).append(r)
    lead = next((r for r in accepted if r.prediction.model_id == prefer), None)
    chosen = groups[lead.prediction.labels] if lead else max(groups.values(), key=len)
    others = tuple(r.prediction.model_id for r in accepted if r not in chosen)
    if len(chosen) == 1:
        return ReadingSummary(chosen[0].prediction, None, not_averaged=others, rejected=rejected)
    average = average_predictions([r.prediction for r in chosen])
    ids = tuple(r.prediction.model_id for r in chosen)
    return ReadingSummary(average, average, ids, others, rejected)


def xray_reading(model: LoadedModel, image: XrayImage, prediction: Prediction | None = None) -> Reading:
    """``model``'s prediction (or the one given, from a Grad-CAM pass) and OOD verdict on ``image``."""
    pred = prediction if prediction is not None else predict_xray(model, image)
    return Reading(pred, xray_ood(model, image), model.card.domain_words)


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
