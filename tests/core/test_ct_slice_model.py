from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.ct.analysis import PATIENT_TOP_FRACTION, analyse_ct, patient_score, slice_probabilities
from core.models.architectures import build_model, gradcam_layer_of
from core.models.ct_slice import CT_SLICE_GRADCAM_LAYER, CT_SLICE_LABELS, DEMO_CT_SLICE, CtSliceResNet
from core.models.registry import ModelRegistry
from tests.ct_helpers import phantom_volume, register_tiny_ct_model


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("channels", [1, 3])
def test_resnet_maps_slices_to_two_logits_and_features(depth: int, channels: int) -> None:
    torch.manual_seed(0)
    model = build_model("ct-resnet", depth=depth, in_channels=channels).eval()
    assert isinstance(model, CtSliceResNet)
    x = torch.randn(3, channels, 64, 64)
    with torch.inference_mode():
        logits = model(x)
        features = model.embed(x)
    assert logits.shape == (3, 2)
    assert features.shape == (3, {18: 512, 50: 2048}[depth]) == (3, model.embedding_dim)
    assert model.backbone.conv1.in_channels == channels


def test_resnet152_is_offered_and_deeper() -> None:
    params = {d: sum(p.numel() for p in CtSliceResNet(depth=d).parameters()) for d in (18, 50, 152)}
    assert params[18] < params[50] < params[152]


def test_bad_depth_is_rejected() -> None:
    with pytest.raises(ValueError, match="18, 50, 152"):
        CtSliceResNet(depth=34)


def test_labels_grad_cam_layer_and_relus() -> None:
    assert CT_SLICE_LABELS == ("Normal", "COVID-19")
    model = CtSliceResNet(depth=18, dropout=0.2)
    assert model.gradcam_layer == CT_SLICE_GRADCAM_LAYER == "backbone.layer4"
    assert gradcam_layer_of(model, model.gradcam_layer) is model.backbone.layer4
    assert not any(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    assert DEMO_CT_SLICE["depth"] == 18


def test_patient_score_is_the_mean_of_the_top_tenth_of_slices() -> None:
    probs = np.array([0.1] * 18 + [0.9, 0.7])
    # 20 slices -> k = 2: the mean of 0.9 and 0.7
    assert patient_score(probs) == pytest.approx(0.8)
    assert PATIENT_TOP_FRACTION == 0.1
    # A naive version: sort, take the top ceil(10%).
    rng = np.random.default_rng(0)
    for n in (1, 7, 10, 11, 48, 301):
        p = rng.uniform(size=n)
        k = max(1, int(np.ceil(0.1 * n)))
        assert patient_score(p) == pytest.approx(np.sort(p)[::-1][:k].mean())
    assert patient_score(np.array([0.3]), top_fraction=1.0) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        patient_score(np.array([]))


def test_a_focal_lesion_scores_higher_than_a_clear_scan_with_the_same_mean() -> None:
    focal = np.array([0.05] * 40 + [0.95] * 5)
    diffuse = np.full(45, focal.mean())
    assert patient_score(focal) > patient_score(diffuse)


def test_registered_slice_model_gives_one_probability_per_axial_slice(tmp_path: Path) -> None:
    register_tiny_ct_model(tmp_path, "ct-slice-tiny", temperature=2.0)
    model = ModelRegistry(tmp_path, device=torch.device("cpu")).load("ct-slice-tiny")
    volume = phantom_volume()
    probs = slice_probabilities(volume, model, batch=8)
    assert probs.shape == (volume.hu.shape[0],) and probs.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()
    # Batching does not change the answer.
    np.testing.assert_allclose(probs, slice_probabilities(volume, model, batch=32), atol=1e-6)
    result = analyse_ct(volume, None, model)
    assert result.covid3d_id is None and result.cam is None and result.probability is None
    assert result.slice_model_id == "ct-slice-tiny" and result.slice_model_version == "test-1"
    np.testing.assert_allclose(result.slice_probabilities, probs, atol=1e-6)
    assert result.slices_read.all()  # a model trained on whole slices reads every slice
    assert result.patient_score == pytest.approx(patient_score(probs))
    assert "slice_model" in result.timings_ms
