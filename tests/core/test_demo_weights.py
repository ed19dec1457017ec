"""The shipped demo weights (``weights/``): they load, they are what the manifest says, and
they recognise the demo phantoms they were trained on, looking where the disease was drawn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.demo.xray_phantom import XrayPhantom, generate_xray
from core.inference import explain_xray, predict_xray
from core.labels import XRAY_LABELS
from core.models.registry import DEFAULT_WEIGHTS_DIR, ModelRegistry
from core.types import XrayImage

pytestmark = pytest.mark.demo_weights

MODEL_IDS = ("cxr-resnet18", "cxr-densenet121", "cxr-custom")


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry(DEFAULT_WEIGHTS_DIR, device=torch.device("cpu"))


def _as_image(phantom: XrayPhantom, name: str) -> XrayImage:
    # Through 8 bits, as a PNG upload would arrive.
    return XrayImage(phantom.to_uint8().astype(np.float32), 127.5, 255.0, name, "png")


def _fresh_phantoms(n_per_class: int = 8) -> list[tuple[str, XrayImage]]:
    out = []
    for i, label in enumerate(XRAY_LABELS):
        for k in range(n_per_class):
            seed = 900_000 + 100 * i + k  # far from the training set's seeds
            severity = 0.0 if label == "Normal" else 0.45 + 0.5 * k / n_per_class
            out.append((label, _as_image(generate_xray(label, severity, seed=seed, size=512), f"{seed}.png")))
    return out


def test_every_demo_model_is_registered_checked_and_labelled(registry: ModelRegistry) -> None:
    assert set(MODEL_IDS) <= set(registry.ids("xray"))
    for model_id in MODEL_IDS:
        card = registry.load(model_id).card  # sha256 check and weights_only load
        assert card.labels == XRAY_LABELS
        assert "not for clinical use" in card.intended_use
        held = card.metrics["held_out"]
        assert held["n"] > 0 and sum(map(sum, held["confusion_matrix"]["rows_true_columns_predicted"])) == held["n"]


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_demo_models_recognise_unseen_phantoms(registry: ModelRegistry, model_id: str) -> None:
    model = registry.load(model_id)
    cases = _fresh_phantoms()
    correct = sum(predict_xray(model, image).predicted_label == label for label, image in cases)
    assert correct / len(cases) >= 0.8


def test_grad_cam_of_covid_looks_at_the_lower_lateral_lungs_not_outside_the_body(registry: ModelRegistry) -> None:
    model = registry.load("cxr-resnet18")
    inside, outside = [], []
    for seed in range(5):
        phantom = generate_xray("COVID-19", 0.8, seed=950_000 + seed, size=512)
        cam = explain_xray(model, _as_image(phantom, "c.png"), target_label="COVID-19").values
        h, w = cam.shape
        lower_lateral = np.concatenate(
            [
                cam[int(0.45 * h) : int(0.7 * h), int(0.1 * w) : int(0.35 * w)].ravel(),
                cam[int(0.45 * h) : int(0.7 * h), int(0.65 * w) : int(0.9 * w)].ravel(),
            ]
        )
        corners = np.concatenate(
            [
                cam[: int(0.1 * h), : int(0.1 * w)].ravel(),
                cam[: int(0.1 * h), -int(0.1 * w) :].ravel(),
                cam[-int(0.1 * h) :, : int(0.1 * w)].ravel(),
                cam[-int(0.1 * h) :, -int(0.1 * w) :].ravel(),
            ]
        )
        inside.append(lower_lateral.mean())
        outside.append(corners.mean())
    assert np.mean(inside) > 2 * np.mean(outside)
