from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.explain.attributions import METHODS, explain
from core.inference import explain_xray, predict_xray
from core.models.registry import ModelRegistry
from core.preprocess import xray_to_input
from core.types import XrayImage


def _hook_count(module: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in module.modules()
    )


def _image(h: int = 90, w: int = 70, seed: int = 0) -> XrayImage:
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 255, size=(h, w)).astype(np.float32)
    return XrayImage(pixels=pixels, window_center=127.5, window_width=255.0, source_name="t.png", file_format="png")


@pytest.fixture(scope="module")
def registry(tiny_weights: Path) -> ModelRegistry:
    return ModelRegistry(tiny_weights, device=torch.device("cpu"))


@pytest.mark.parametrize("model_id", ["cxr-resnet18", "cxr-densenet121", "cxr-custom"])
@pytest.mark.parametrize("method", METHODS)
def test_map_has_image_shape_unit_range_and_leaves_no_hooks(registry, model_id: str, method: str) -> None:
    model = registry.load(model_id)
    image = _image()
    hooks_before = _hook_count(model.module)
    cam = explain_xray(model, image, target_label="COVID-19", method=method)
    assert cam.values.shape == image.shape  # resized back to the radiograph, not the 64 px input
    assert cam.values.dtype == np.float32
    assert np.isfinite(cam.values).all()
    assert cam.values.min() >= 0.0 and cam.values.max() <= 1.0
    assert cam.target_label == "COVID-19" and cam.method == method
    assert _hook_count(model.module) == hooks_before
    assert not model.module.training


def test_densenet_in_place_relu_does_not_break_grad_cam_and_train_mode_is_kept(registry) -> None:
    model = registry.load("cxr-densenet121")
    model.module.train()  # whatever mode the caller had, it gets back
    x = xray_to_input(_image(), model.card.input)
    cam = explain(model, x, target=2)
    assert model.module.training
    assert cam.values.shape == (64, 64)


def test_input_is_not_mutated(registry) -> None:
    model = registry.load("cxr-resnet18")
    x = xray_to_input(_image(), model.card.input)
    before = x.clone()
    for method in METHODS:
        explain(model, x, target=1, method=method)
    assert torch.equal(x, before)


def test_default_target_is_the_predicted_class(registry) -> None:
    model = registry.load("cxr-custom")
    image = _image(seed=3)
    pred = predict_xray(model, image)
    cam = explain_xray(model, image)
    assert cam.target_label == pred.predicted_label


def test_probabilities_sum_to_one_in_label_order(registry) -> None:
    model = registry.load("cxr-resnet18")
    pred = predict_xray(model, _image())
    assert pred.labels == ("Normal", "Viral pneumonia", "COVID-19")
    assert sum(pred.probabilities) == pytest.approx(1.0, abs=1e-5)


def test_two_sessions_sharing_one_model_get_the_same_results_as_alone(registry) -> None:
    from concurrent.futures import ThreadPoolExecutor

    model = registry.load("cxr-resnet18")
    images = [_image(seed=s) for s in range(4)]
    alone = [(predict_xray(model, im).probabilities, explain_xray(model, im, "COVID-19").values) for im in images]
    hooks_before = _hook_count(model.module)

    def work(im: XrayImage):
        return predict_xray(model, im).probabilities, explain_xray(model, im, "COVID-19").values

    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(work, images * 2))
    for (p1, c1), (p2, c2) in zip(alone * 2, together, strict=True):
        assert p1 == pytest.approx(p2, abs=1e-6)
        assert np.allclose(c1, c2, atol=1e-5)
    assert _hook_count(model.module) == hooks_before


@pytest.mark.parametrize("method", METHODS)
def test_one_pass_analysis_predicts_exactly_what_predict_does(registry, method: str) -> None:
    from core.inference import analyse_xray

    model = registry.load("cxr-densenet121")
    image = _image(seed=5)
    pred, cam = analyse_xray(model, image, method=method)
    alone = predict_xray(model, image)
    assert pred.probabilities == pytest.approx(alone.probabilities, abs=1e-5)
    assert cam.target_label == alone.predicted_label
