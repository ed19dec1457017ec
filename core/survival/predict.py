"""Predictions of the survival and prognosis models for one patient, and their Grad-CAMs.

- :func:`predict_survival`: the CNN-LSTM's P(survival) from a patient's X-rays, given in time
  order, with Grad-CAM of the risk of death (the negated logit) at every time point
  (:class:`core.explain.explainer.Explainer` on the DenseNet's last feature map, which the
  time-distributed CNN computes for every X-ray of the series in one forward pass, so one
  backward pass gives one map per X-ray).
- :func:`predict_prognosis`: a prognosis model's P(high risk) from one CT, or a prior and a
  follow-up CT, in HU.

Both take images in time order; :func:`in_time_order` sorts (day, image) pairs by day (never
by upload or file order) and refuses two images of one series on the same day only when
asked to.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.ct.preprocess import prepare_volume
from core.errors import InvalidInputError
from core.explain.explainer import Explainer
from core.models.registry import LoadedModel
from core.preprocess import normalise, to_unit_square

SURVIVAL_TASK = "survival"
PROGNOSIS_TASK = "prognosis"


def task_of(model: LoadedModel) -> str | None:
    return model.card.extra.get("task")


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def in_time_order(items: Sequence[tuple[float, object]]) -> list[int]:
    """Indices of ``items`` ((day, anything) pairs) sorted by day; a stable sort keeps the given
    order among scans of one day. Raises for a day that is not a finite number."""
    for day, _ in items:
        if isinstance(day, bool) or not isinstance(day, numbers.Real) or not math.isfinite(float(day)):
            raise InvalidInputError(f"Every image needs its day as a number; got {day!r}.")
    return sorted(range(len(items)), key=lambda i: float(items[i][0]))


@dataclass(frozen=True)
class SurvivalPrediction:
    probability: float  # P(survival), calibrated by the card's temperature
    logit: float
    maps: tuple[np.ndarray, ...]  # per time point, [0, 1] over each image's own (H, W); () when not asked
    model_id: str
    model_version: str

    @property
    def death_probability(self) -> float:
        return 1.0 - self.probability


def _check(model: LoadedModel, task: str) -> None:
    if task_of(model) != task:
        raise InvalidInputError(f"Model {model.id} is not a {task} model.")


def survival_input(model: LoadedModel, images: Sequence[np.ndarray]) -> torch.Tensor:
    """X-rays ([0, 1] (H, W) each, in time order) as the CNN-LSTM's input (1, T, C, S, S)."""
    if not images:
        raise InvalidInputError("The survival model needs at least one X-ray.")
    spec = model.card.input
    return normalise(torch.cat([to_unit_square(np.asarray(im, dtype=np.float32), spec.size) for im in images]), spec)[
        None
    ]


def predict_survival(model: LoadedModel, images: Sequence[np.ndarray], *, gradcam: bool = True) -> SurvivalPrediction:
    """P(survival) from a patient's X-rays in time order, with a Grad-CAM per X-ray."""
    _check(model, SURVIVAL_TASK)
    x = survival_input(model, images)
    lengths = torch.tensor([x.shape[1]])
    if not gradcam:
        with model.lock, torch.inference_mode():
            logit = float(model.module(x.to(model.device), lengths)[0, 0])
        return SurvivalPrediction(_sigmoid(logit / model.card.temperature), logit, (), model.id, model.card.version)
    # The risk of death is the negated logit; the CNN's feature map holds one map per X-ray.
    attribution = Explainer(model).attribute(x, 0, extra_args=(lengths,), output=torch.neg)
    logit = -float(attribution.outputs[0, 0])
    maps = tuple(attribution.resampled(np.shape(image), t) for t, image in enumerate(images))
    return SurvivalPrediction(_sigmoid(logit / model.card.temperature), logit, maps, model.id, model.card.version)


@dataclass(frozen=True)
class PrognosisPrediction:
    probability: float  # P(high risk), calibrated
    logit: float
    scans: int
    model_id: str
    model_version: str

    def high_risk(self, threshold: float) -> bool:
        return self.probability >= threshold


def prognosis_threshold(model: LoadedModel) -> float:
    return float(model.card.thresholds.get("high risk", 0.5))


def survival_threshold(model: LoadedModel) -> float:
    """High risk of death when P(death) reaches this."""
    return float(model.card.thresholds.get("death", 0.5))


def predict_prognosis(model: LoadedModel, volumes: Sequence[np.ndarray]) -> PrognosisPrediction:
    """P(high risk) from 1 CT, or from a prior and a follow-up (in that order), each in HU."""
    _check(model, PROGNOSIS_TASK)
    scans = int(model.card.architecture_kwargs.get("scans", 1))
    if len(volumes) != scans:
        raise InvalidInputError(
            f"Model {model.id} reads {scans} CT scan{'s' if scans > 1 else ''}; {len(volumes)} given."
        )
    x = torch.cat([prepare_volume(v, model.card.input)[:, 0] for v in volumes])[None]  # (1, S, D, H, W)
    with model.lock, torch.inference_mode():
        logit = float(model.module(x.to(model.device))[0, 0])
    return PrognosisPrediction(_sigmoid(logit / model.card.temperature), logit, scans, model.id, model.card.version)
