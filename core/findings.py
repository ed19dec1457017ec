"""The findings model (seed 004): one probability per finding for a chest X-ray.

A multi-label model's outputs are independent sigmoids, sigmoid(logit / T), not a softmax:
an X-ray can show an opacity and an effusion at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.errors import InvalidInputError
from core.models.registry import LoadedModel
from core.preprocess import xray_to_input
from core.types import XrayImage


@dataclass(frozen=True)
class FindingProbabilities:
    model_id: str
    model_version: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    calibrated: bool = False  # divided by a temperature fitted on the dev split (T != 1)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.labels, self.probabilities, strict=True))


def check_findings_model(model: LoadedModel) -> None:
    if not model.card.multi_label or model.card.input_kind != "xray":
        raise InvalidInputError(f"{model.id} is not a findings model (a multi-label X-ray model such as cxr-findings).")


def findings_from_inputs(model: LoadedModel, x: torch.Tensor) -> np.ndarray:
    """Prepared inputs (N, C, S, S) -> finding probabilities (N, K)."""
    with model.lock, torch.inference_mode():
        logits = model.module(x.to(model.device)).float().cpu()
    return torch.sigmoid(logits / model.card.temperature).numpy()


def predict_findings(model: LoadedModel, image: XrayImage) -> FindingProbabilities:
    """The probability of each finding on one radiograph."""
    check_findings_model(model)
    probs = findings_from_inputs(model, xray_to_input(image, model.card.input))[0]
    return FindingProbabilities(
        model.id,
        model.card.version,
        model.card.labels,
        tuple(float(p) for p in probs),
        calibrated=model.card.temperature != 1.0,
    )
