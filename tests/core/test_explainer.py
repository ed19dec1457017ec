"""The one explainer (core.explain.explainer): what it gives back to the shared model, the lock
it holds, its Grad-CAM against a hand-written one, and maps made at display size."""

from __future__ import annotations

import dataclasses
import io
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from core.explain.explainer import GRAD_CAM, METHODS, Attribution, Explainer
from core.explain.overlay import display_shape, downsample_for_display
from core.inference import analyse_xray, predict_xray, xray_analysis
from core.models.registry import ModelRegistry
from core.types import XrayImage


class _Net(nn.Module):
    """conv -> ReLU -> conv (the Grad-CAM layer) -> ReLU -> pool -> linear, 3 outputs."""

    gradcam_layer = "features.2"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU()
        )
        self.norm = nn.BatchNorm1d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.features(x).mean((2, 3))))


def _hook_count(module: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in module.modules()
    )


def _input(seed: int = 1, size: int = 16) -> torch.Tensor:
    return torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _hand_written_grad_cam(net: nn.Module, layer: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM from its definition: ReLU(sum_k mean(ds/dA_k) A_k) on the layer's grid."""
    kept: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
    try:
        score = net(x)[0, target]
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(score, kept[0])
    return F.relu((grad.mean((2, 3), keepdim=True) * kept[0]).sum(1))[0].detach()


def test_grad_cam_equals_the_hand_written_one_and_the_outputs_a_plain_forward() -> None:
    net = _Net().eval()
    x = _input()
    attribution = Explainer(net).attribute(x, 2)
    expected = _hand_written_grad_cam(net, net.features[2], x, 2)
    assert attribution.heat.shape == (1, 8, 8) and attribution.target == 2
    torch.testing.assert_close(attribution.heat[0], expected, atol=1e-6, rtol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(attribution.outputs, net(x))
    # Scaled on the layer's own grid: the map over its maximum.
    unit = attribution.resampled((8, 8))
    np.testing.assert_allclose(unit, (expected / expected.max()).numpy(), atol=1e-6)
    # On the input grid: bilinear, align_corners=False, then scaled.
    up = F.interpolate(expected[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(attribution.resampled((16, 16)), (up / up.max()).numpy(), atol=1e-6)


def test_default_target_is_the_largest_output_and_signed_keeps_the_negative_part() -> None:
    net = _Net().eval()
    x = _input(seed=4)
    explainer = Explainer(net)
    plain = explainer.attribute(x)
    assert plain.target == int(plain.outputs[0].argmax())
    signed = explainer.attribute(x, plain.target, signed=True)
    torch.testing.assert_close(plain.heat, signed.heat.clamp(min=0))
    assert signed.resampled((16, 16), signed=True).min() >= -1.0


def test_mode_requires_grad_and_hooks_are_given_back_also_when_the_call_fails() -> None:
    net = _Net()
    net.train()
    net.norm.eval()  # a mixed state: the caller's own, submodule by submodule
    net.features[0].weight.requires_grad_(False)
    modes = {name: m.training for name, m in net.named_modules()}
    grads = {name: p.requires_grad for name, p in net.named_parameters()}
    x = _input()
    before = x.clone()
    for method in METHODS:
        baseline = torch.zeros_like(x) if method in ("Integrated Gradients", "Occlusion") else None
        Explainer(net).attribute(x, 1, method=method, baseline=baseline)
        assert {name: m.training for name, m in net.named_modules()} == modes
        assert {name: p.requires_grad for name, p in net.named_parameters()} == grads
        assert _hook_count(net) == 0
        assert all(p.grad is None for p in net.parameters())
    assert torch.equal(x, before)

    def fail(_x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom after the Grad-CAM layer")

    net.fc.forward = fail  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="boom"):
        Explainer(net).attribute(x, 0)
    assert {name: m.training for name, m in net.named_modules()} == modes
    assert {name: p.requires_grad for name, p in net.named_parameters()} == grads
    assert _hook_count(net) == 0


class _LockedNet(_Net):
    """Records, at each forward pass, whether the lock is held by the calling thread."""

    def __init__(self, lock: threading.RLock) -> None:
        super().__init__()
        self.lock = lock
        self.held: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.held.append(self.lock._is_owned())  # type: ignore[attr-defined]
        return super().forward(x)


@pytest.mark.parametrize("method", METHODS)
def test_the_lock_is_held_while_the_network_runs(method: str) -> None:
    lock = threading.RLock()
    net = _LockedNet(lock).eval()
    baseline = torch.zeros(1, 1, 16, 16) if method in ("Integrated Gradients", "Occlusion") else None
    Explainer(net, lock=lock).attribute(_input(), 0, method=method, baseline=baseline)
    assert net.held and all(net.held)
    assert not lock._is_owned()  # type: ignore[attr-defined]


def test_a_registered_model_is_explained_under_its_own_lock(tiny_weights: Path) -> None:
    loaded = ModelRegistry(tiny_weights, device=torch.device("cpu")).load("cxr-custom")
    lock = threading.RLock()
    net = _LockedNet(lock).eval()
    model = dataclasses.replace(loaded, module=net, lock=lock)
    Explainer(model, "features.2").attribute(_input(), None)
    assert net.held == [True]


def test_bad_calls_are_refused() -> None:
    net = _Net().eval()
    with pytest.raises(ValueError, match="no layer"):
        Explainer(net, "features.9")
    explainer = Explainer(net)
    with pytest.raises(ValueError, match="unknown attribution method"):
        explainer.attribute(_input(), 0, method="LIME")
    with pytest.raises(ValueError, match="needs a baseline"):
        explainer.attribute(_input(), 0, method="Occlusion")
    with pytest.raises(ValueError, match="one 2D image"):
        explainer.attribute(torch.cat([_input(), _input(2)]), 0, method="Occlusion", baseline=torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="cannot resample"):
        explainer.attribute(_input(), 0).resampled((4, 4, 4))


def test_an_all_zero_map_stays_zero() -> None:
    attribution = Attribution(torch.zeros(1, 3, 3), torch.zeros(1, 2), 0, GRAD_CAM)
    assert (attribution.resampled((10, 12)) == 0).all()
    assert attribution.resampled((10, 12)).dtype == np.float32


# -- the X-ray path: maps made at display size -------------------------------------------------


def _radiograph(h: int, w: int, seed: int = 0) -> XrayImage:
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 255, size=(h, w)).astype(np.float32)
    return XrayImage(pixels=pixels, window_center=127.5, window_width=255.0, source_name="t.png", file_format="png")


@pytest.mark.parametrize("model_id", ["cxr-resnet18", "cxr-densenet121", "cxr-custom"])
@pytest.mark.parametrize("shape", [(2048, 2048), (1500, 1100)])
def test_the_display_size_map_is_the_full_size_map_downsampled(
    tiny_weights: Path, model_id: str, shape: tuple[int, int]
) -> None:
    model = ModelRegistry(tiny_weights, device=torch.device("cpu")).load(model_id)
    image = _radiograph(*shape)
    pred, full = analyse_xray(model, image, "COVID-19")
    shown_pred, shown = analyse_xray(model, image, "COVID-19", shape=display_shape(image.shape))
    assert shown.values.shape == downsample_for_display(image.windowed()).shape
    assert full.values.shape == shape
    assert shown_pred == pred and (shown.target_label, shown.method) == (full.target_label, full.method)
    reference = downsample_for_display(full.values)
    assert np.abs(shown.values - reference).max() < 0.02
    assert np.abs(shown.values - reference).mean() < 0.002


def test_one_analysis_gives_the_prediction_and_the_map_at_any_size(tiny_weights: Path) -> None:
    model = ModelRegistry(tiny_weights, device=torch.device("cpu")).load("cxr-resnet18")
    image = _radiograph(300, 200, seed=2)
    analysis = xray_analysis(model, image)
    assert analysis.prediction.probabilities == pytest.approx(predict_xray(model, image).probabilities, abs=1e-5)
    assert analysis.explanation().values.shape == (300, 200)
    assert analysis.explanation((150, 100)).values.shape == (150, 100)
    png = analysis.overlay_png(image, (127.5, 255.0))
    assert Image.open(io.BytesIO(png)).size == (200, 300)  # full size: the download
