from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.explain.overlay import (
    COLORMAPS,
    colormap_lut,
    display_shape,
    downsample_for_display,
    png_bytes,
    render_overlay,
)
from core.inference import average_predictions
from core.types import Prediction


@pytest.mark.parametrize("name", COLORMAPS)
def test_colour_maps_have_256_distinct_rgb_steps(name: str) -> None:
    lut = colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert len({tuple(c) for c in lut}) > 100


def test_overlay_colours_hot_regions_and_leaves_cold_ones_gray() -> None:
    gray = np.full((40, 40), 0.5, dtype=np.float32)
    heat = np.zeros((40, 40), dtype=np.float32)
    heat[10:20, 10:20] = 1.0
    rgb = render_overlay(gray, heat, "Jet", opacity=0.8)
    assert rgb.shape == (40, 40, 3) and rgb.dtype == np.uint8
    cold, hot = rgb[30, 30], rgb[15, 15]
    assert cold[0] == cold[1] == cold[2] == 128
    assert hot[0] > hot[2] + 50  # Jet's top is red


def test_zero_opacity_shows_the_plain_radiograph() -> None:
    gray = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    rgb = render_overlay(gray, np.ones_like(gray), opacity=0.0)
    assert (rgb[..., 0] == np.round(gray * 255)).all()


def test_png_round_trips() -> None:
    rgb = render_overlay(np.random.default_rng(0).random((30, 20), dtype=np.float32), None)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(rgb)))), rgb)


def test_display_downsampling_keeps_aspect_and_bounds_size() -> None:
    arr = np.zeros((3000, 2000, 3), dtype=np.uint8)
    small = downsample_for_display(arr, max_side=1024)
    assert max(small.shape[:2]) <= 1024 and small.shape[0] / small.shape[1] == pytest.approx(1.5, rel=0.01)


@pytest.mark.parametrize("shape", [(2048, 2048), (3000, 2000), (1500, 1100), (1024, 700), (90, 70)])
def test_a_map_made_at_display_shape_fits_the_downsampled_image(shape: tuple[int, int]) -> None:
    gray = np.zeros(shape, dtype=np.float32)
    shown = downsample_for_display(gray)
    assert display_shape(shape) == shown.shape
    assert render_overlay(shown, np.zeros(display_shape(shape), dtype=np.float32)).shape == (*shown.shape, 3)


def test_average_is_the_mean_of_probabilities() -> None:
    labels = ("Normal", "Viral pneumonia", "COVID-19")
    a = Prediction("a", "1", labels, (0.7, 0.2, 0.1))
    b = Prediction("b", "1", labels, (0.1, 0.2, 0.7))
    avg = average_predictions([a, b])
    assert avg.probabilities == pytest.approx((0.4, 0.2, 0.4))
    with pytest.raises(ValueError):
        average_predictions([a, Prediction("c", "1", ("x", "y", "z"), (1, 0, 0))])
