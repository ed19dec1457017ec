"""The CNN-LSTM survival model and COVID3D's prognosis head: padded batches read like single
series, time order matters, the two-scan head reads the prior; and the survival prediction with
its Grad-CAM per X-ray on a tiny trained model (see tests/survival_helpers.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import InvalidInputError
from core.models.prognosis import Covid3DPrognosis
from core.models.registry import ModelRegistry
from core.models.survival import CNN_FEATURES, CnnLstmSurvival
from core.survival.predict import in_time_order, predict_survival
from tests.survival_helpers import CT_ID, SURVIVAL_ID, survival_weights  # noqa: F401

SIZE = 32  # pixels: DenseNet-121 pools a 32 px image to one feature voxel
LENGTHS = (3, 1, 2)


@pytest.fixture(scope="module")
def cnn_lstm() -> CnnLstmSurvival:
    torch.manual_seed(0)
    return CnnLstmSurvival(fc_features=16, hidden=8).eval()


def padded(values: list[torch.Tensor], fill: float) -> torch.Tensor:
    """(N, T_max, ...) with ``fill`` after each series' end."""
    t_max = max(v.shape[0] for v in values)
    out = torch.full((len(values), t_max, *values[0].shape[1:]), fill)
    for i, v in enumerate(values):
        out[i, : v.shape[0]] = v
    return out


@pytest.fixture(scope="module")
def series() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand(n, 3, SIZE, SIZE, generator=g) for n in LENGTHS]


@torch.no_grad()
def test_a_padded_batch_gives_each_series_its_own_output(cnn_lstm: CnnLstmSurvival, series) -> None:
    lengths = torch.tensor(LENGTHS)
    batch = cnn_lstm(padded(series, 0.0), lengths)
    alone = torch.cat([cnn_lstm(s[None], torch.tensor([s.shape[0]])) for s in series])
    assert batch.shape == (3, 1)
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=0)
    # Whatever the padding holds, it is never read.
    torch.testing.assert_close(cnn_lstm(padded(series, 7.5), lengths), batch, atol=1e-5, rtol=0)


@torch.no_grad()
def test_the_head_on_features_ignores_padding_too(cnn_lstm: CnnLstmSurvival) -> None:
    g = torch.Generator().manual_seed(2)
    feats = [torch.rand(n, CNN_FEATURES, generator=g) for n in LENGTHS]
    lengths = torch.tensor(LENGTHS)
    batch = cnn_lstm.head(padded(feats, 0.0), lengths)
    alone = torch.cat([cnn_lstm.head(f[None], torch.tensor([f.shape[0]])) for f in feats])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(cnn_lstm.head(padded(feats, -3.0), lengths), batch, atol=1e-5, rtol=0)
    # The full model is the head over the CNN's pooled features.
    x = torch.rand(1, 2, 3, SIZE, SIZE, generator=g)
    two = torch.tensor([2])
    torch.testing.assert_close(cnn_lstm(x, two), cnn_lstm.head(cnn_lstm.cnn.embed(x[0])[None], two))


@torch.no_grad()
def test_lengths_that_do_not_fit_the_batch_are_refused(cnn_lstm: CnnLstmSurvival) -> None:
    feats = torch.zeros(2, 3, CNN_FEATURES)
    for bad in ([3, 0], [4, 1], [3]):
        with pytest.raises(ValueError, match="lengths"):
            cnn_lstm.head(feats, torch.tensor(bad))


@torch.no_grad()
def test_time_order_changes_the_output(cnn_lstm: CnnLstmSurvival, series) -> None:
    three = torch.tensor([3])
    feats = torch.rand(1, 3, CNN_FEATURES, generator=torch.Generator().manual_seed(5)) * 4.0
    forward, backward = cnn_lstm.head(feats, three), cnn_lstm.head(feats.flip(1), three)
    assert (forward - backward).abs().item() > 1e-3, "the LSTM must read the X-rays in order"
    # Through the CNN too (an untrained DenseNet pools noise images to similar features, hence
    # the small margin, still far above float32 rounding).
    x = series[0][None]
    assert (cnn_lstm(x, three) - cnn_lstm(x.flip(1), three)).abs().item() > 1e-6


def test_in_time_order_sorts_by_day_and_keeps_ties_in_the_given_order() -> None:
    items = [(5.0, "c"), (0, "a"), (5, "d"), (2.5, "b"), (5.0, "e")]
    order = in_time_order(items)
    assert [items[i][1] for i in order] == ["a", "b", "c", "d", "e"]
    assert in_time_order([]) == []


@pytest.mark.parametrize("day", [np.int64(3), np.float32(3.0), np.float64(3.0)])
def test_in_time_order_takes_days_from_a_numpy_column(day: object) -> None:
    """Days read from a table (pandas, NumPy) are NumPy numbers: they are days all the same."""
    assert in_time_order([(day, "later"), (1.0, "first")]) == [1, 0]


@pytest.mark.parametrize("day", [None, math.nan, math.inf, "3"])
def test_in_time_order_refuses_an_image_without_a_day(day: object) -> None:
    with pytest.raises(InvalidInputError, match="day"):
        in_time_order([(0.0, "a"), (day, "b")])


# -- COVID3D prognosis -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def volumes() -> torch.Tensor:
    return torch.rand(3, 2, 16, 32, 32, generator=torch.Generator().manual_seed(3))


def calibrated(model: Covid3DPrognosis, x: torch.Tensor) -> Covid3DPrognosis:
    """``model`` in eval mode with its BatchNorm statistics set from ``x``: PyTorch's default
    initialisation shrinks the signal at each of the 27 layers, so an untrained COVID3D with
    fresh statistics pools every volume to nearly the same features."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a cumulative average: one batch sets the statistics
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


@torch.no_grad()
def test_two_scan_prognosis_reads_the_prior(volumes: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = calibrated(Covid3DPrognosis(width=0.0625, scans=2), volumes)
    x = volumes[:1]
    other_prior = x.clone()
    other_prior[:, 0] = volumes[1, 0]
    other_follow_up = x.clone()
    other_follow_up[:, 1] = volumes[1, 1]
    assert model(x).shape == (1, 1)
    assert (model(x) - model(other_prior)).abs().item() > 1e-3
    assert (model(x) - model(other_follow_up)).abs().item() > 1e-3
    # [f2, f2 - f1]: the follow-up's features and their change since the prior.
    f = model.backbone.embed(x.reshape(2, 1, 16, 32, 32))
    torch.testing.assert_close(model(x), model.head(torch.cat([f[1], f[1] - f[0]])[None]))
    # In a batch each patient gets their own output.
    torch.testing.assert_close(model(volumes)[1:], model(volumes[1:]), atol=1e-5, rtol=0)


@torch.no_grad()
def test_one_scan_prognosis_is_covid3d_features_then_the_head(volumes: torch.Tensor) -> None:
    torch.manual_seed(0)
    x = volumes[:, :1]
    model = calibrated(Covid3DPrognosis(width=0.0625, scans=1), x)
    expected = model.head(model.backbone.embed(x))  # (N, 1, D, H, W): one channel
    torch.testing.assert_close(model(x), expected)
    assert expected.std() > 1e-3  # the patients differ, so the comparison means something


@pytest.mark.parametrize("scans, shape", [(1, (1, 2, 16, 32, 32)), (2, (1, 1, 16, 32, 32)), (2, (2, 16, 32, 32))])
def test_prognosis_refuses_the_wrong_number_of_scans(scans: int, shape: tuple[int, ...]) -> None:
    model = Covid3DPrognosis(width=0.0625, scans=scans).eval()
    with pytest.raises(ValueError, match=f"\\(N, {scans}, D, H, W\\)"):
        model(torch.zeros(shape))
    with pytest.raises(ValueError, match="1 or 2 scans"):
        Covid3DPrognosis(width=0.0625, scans=3)


# -- predict_survival on a tiny trained model ------------------------------------------------


@pytest.fixture(scope="module")
def registry(survival_weights: Path) -> ModelRegistry:  # noqa: F811
    return ModelRegistry(survival_weights, device=torch.device("cpu"))


def test_survival_probability_and_one_grad_cam_per_x_ray(registry: ModelRegistry) -> None:
    model = registry.load(SURVIVAL_ID)
    rng = np.random.default_rng(4)
    shapes = [(48, 40), (64, 64), (30, 72)]
    images = [rng.random(s).astype(np.float32) for s in shapes]
    copies = [im.copy() for im in images]
    pred = predict_survival(model, images)
    assert 0.0 < pred.probability < 1.0
    assert pred.probability == pytest.approx(1.0 / (1.0 + math.exp(-pred.logit / model.card.temperature)))
    assert pred.death_probability == pytest.approx(1.0 - pred.probability)
    assert (pred.model_id, pred.model_version) == (SURVIVAL_ID, model.card.version)
    assert [m.shape for m in pred.maps] == shapes
    for m in pred.maps:
        assert np.isfinite(m).all() and m.min() >= 0.0 and m.max() <= 1.0
    for im, copy in zip(images, copies, strict=True):
        np.testing.assert_array_equal(im, copy)  # the caller's images are not changed
    # Grad-CAM does not change the prediction, and leaves no hooks behind.
    plain = predict_survival(model, images, gradcam=False)
    assert plain.maps == ()
    assert plain.logit == pytest.approx(pred.logit, abs=1e-5)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.module.modules())


def test_survival_prediction_refuses_other_models_and_empty_series(registry: ModelRegistry) -> None:
    image = np.zeros((32, 32), np.float32)
    with pytest.raises(InvalidInputError, match="not a survival model"):
        predict_survival(registry.load(CT_ID), [image])
    with pytest.raises(InvalidInputError, match="at least one X-ray"):
        predict_survival(registry.load(SURVIVAL_ID), [])
