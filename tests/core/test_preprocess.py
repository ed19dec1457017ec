from __future__ import annotations

import numpy as np
import pytest
import torch

from core.models.manifest import InputSpec
from core.preprocess import baseline_input, normalise, to_unit_square, xray_to_input
from core.types import XrayImage

RGB_SPEC = InputSpec(64, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
GRAY_SPEC = InputSpec(64, 1, (0.5,), (0.25,))


@pytest.mark.parametrize("shape", [(300, 200), (64, 64), (40, 90)])
def test_any_image_becomes_a_square_in_unit_range(shape) -> None:
    unit = np.random.default_rng(0).random(shape, dtype=np.float32)
    t = to_unit_square(unit, 64)
    assert t.shape == (1, 1, 64, 64) and t.dtype == torch.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def test_downsampling_is_anti_aliased() -> None:
    # A one-pixel checkerboard is mid-grey at any coarser scale; point sampling would alias it.
    checker = (np.indices((512, 512)).sum(0) % 2).astype(np.float32)
    t = to_unit_square(checker, 64)
    assert abs(float(t.mean()) - 0.5) < 0.02 and float(t.std()) < 0.05


def test_resize_does_not_mutate_the_source() -> None:
    unit = np.full((64, 64), 0.3, dtype=np.float32)
    to_unit_square(unit, 64)[0, 0, 0, 0] = 1.0
    assert unit[0, 0] == pytest.approx(0.3)


def test_grayscale_is_replicated_and_normalised_per_channel() -> None:
    x = normalise(torch.full((2, 1, 64, 64), 0.5), RGB_SPEC)
    assert x.shape == (2, 3, 64, 64)
    for c in range(3):
        expected = (0.5 - RGB_SPEC.mean[c]) / RGB_SPEC.std[c]
        assert torch.allclose(x[:, c], torch.full((2, 64, 64), expected))
    assert normalise(torch.zeros(1, 1, 64, 64), GRAY_SPEC).shape == (1, 1, 64, 64)
    with pytest.raises(ValueError):
        normalise(torch.zeros(1, 3, 64, 64), RGB_SPEC)


def test_model_input_uses_the_files_own_window() -> None:
    pixels = np.linspace(0, 4000, 128 * 128, dtype=np.float32).reshape(128, 128)
    image = XrayImage(pixels, window_center=1000.0, window_width=2000.0, source_name="x.dcm", file_format="dicom")
    x = xray_to_input(image, GRAY_SPEC)
    unit = x * 0.25 + 0.5
    # Everything above the window's top (2000) is white; the bottom row of the image is.
    assert torch.allclose(unit[0, 0, -1], torch.ones(64), atol=1e-5)
    assert float(unit[0, 0, 0].max()) < 0.2


def test_baseline_is_the_black_image_in_input_space() -> None:
    b = baseline_input(RGB_SPEC)
    assert torch.allclose(
        b * torch.tensor(RGB_SPEC.std).view(1, 3, 1, 1) + torch.tensor(RGB_SPEC.mean).view(1, 3, 1, 1),
        torch.zeros(1, 3, 64, 64),
        atol=1e-6,
    )
